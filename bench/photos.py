"""Benchmark: a folder of a few thousand varying-size photos (200-500 px, 1:1 to 16:9, 10 classes), the suite's
default against TensorFlow's "Image classification" tutorial recipe at equal training time.

The folder is derived from CIFAR-10 by ``bench.photo_folder`` (no real photos of that size ship with the shared
data; that module says what the proxy shares with real photos and what it lacks). The suite runs the README's
command with no ``--set`` (``suite train image_classification --data FOLDER``) in a subprocess; the tutorial
trains for its 15 epochs and on to the suite's training time, with weights saved at both points, and the
better of the two is its score. Both are scored on the same held-out ``test/`` folder.
``python -m bench.run --only photos [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cli_train, machine, md_table, peak_rss_mb, save_results, shared_data, timed_snapshots

NAME = "photos"
MARGIN = 10.0  # points the suite must be ahead by (the bar)


def suite_default(folder: Path, budget_min: float | None) -> dict:
    """The default command as a user types it; ``budget_min`` only in quick mode."""
    extra = ("--set", f"time_budget_minutes={budget_min}") if budget_min else ()
    run = cli_train(folder, *extra, prefix="bench-photos-suite-")
    plan = (run["info"].get("plan") or {}).get("values") or {}
    return {"test_accuracy": run["metrics"]["test"]["accuracy"], "wall_seconds": run["wall_seconds"],
            "train_seconds": sum(float(e["seconds"]) for e in run["epochs"]), "epochs": len(run["epochs"]),
            "cpu_seconds": run["cpu_seconds"],
            "model": f"{plan.get('model')} width {plan.get('width')} at {plan.get('image_size')} px",
            "resize_policy": run["meta"].get("resize_policy"), "augmentation": run["meta"].get("augmentation"),
            "plan_reasons": (run["info"].get("plan") or {}).get("reasons")}


def tutorial(folder: Path, seconds: float, home: Path) -> dict:
    """The tutorial's 15 epochs, then on to ``seconds`` of training; test accuracy at both points."""
    import keras

    from bench.baselines import tf_image_tutorial as tut

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    train, val, test, names = tut.datasets(folder / "train", folder / "test")
    model = tut.build(len(names))
    snaps = timed_snapshots(home / "tutorial", 0.0, budget_s=seconds, at=(seconds,))

    class AtRecipeEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == tut.EPOCHS:
                self.seconds = snaps.seconds()
                model.save_weights(str(home / "tutorial-15.weights.h5"))

    at_end = AtRecipeEnd()
    t = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=10_000, verbose=0, callbacks=[snaps, at_end])
    wall = time.perf_counter() - t
    out = {"epochs_done": len(history.history["loss"]), "wall_seconds": wall}
    for key, path in (("recipe", home / "tutorial-15.weights.h5"), ("equal_time", Path(snaps.points[-1]["snapshot"]))):
        if path.exists():
            model.load_weights(str(path))
            out[key] = {"test_accuracy": float(model.evaluate(test, verbose=0)[1]),
                        "seconds": getattr(at_end, "seconds", None) if key == "recipe" else snaps.points[-1]["seconds"]}
    return out


def run(quick: bool) -> str:
    root = shared_data("cifar10")
    if root is None:
        return "## Photos of varying size\n\nSkipped: `cifar10/` not found under SUITE_SHARED_DATA.\n"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench.photo_folder import build

    home = Path(tempfile.mkdtemp(prefix="bench-photos-"))
    try:
        folder = home / "photos"
        per_train, per_test = (60, 20) if quick else (300, 100)
        counts = build(root, folder, per_class_train=per_train, per_class_test=per_test)
        suite = suite_default(folder, 1.0 if quick else None)
        tut = tutorial(folder, suite["train_seconds"], home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results = {"quick": quick, "machine": machine(), "counts": counts, "suite": suite, "tutorial": tut,
               "peak_rss_mb": peak_rss_mb(), "load": os.getloadavg()}
    save_results(NAME + ("_quick" if quick else ""), results)
    return section(results)


def best_tutorial(tut: dict) -> dict:
    return max((v for k, v in tut.items() if k in ("recipe", "equal_time")), key=lambda v: v["test_accuracy"])


def section(results: dict) -> str:
    suite, tut = results["suite"], results["tutorial"]
    best = best_tutorial(tut)
    gap = 100 * (suite["test_accuracy"] - best["test_accuracy"])
    rows = [["suite default (no `--set`)", f"{100 * suite['test_accuracy']:.2f}",
             f"{suite['model']}, {suite['epochs']} epochs, {suite['resize_policy']}", f"{suite['train_seconds']:.0f}"]]
    for key, label in (("recipe", "TF tutorial, its 15 epochs"), ("equal_time", "TF tutorial, equal time")):
        if key in tut:
            rows.append([label, f"{100 * tut[key]['test_accuracy']:.2f}", "180x180, flip/rotation/zoom, dropout 0.2",
                         f"{tut[key]['seconds']:.0f}"])
    c = results["counts"]
    mode = "quick (600 training photos, 1-minute budget)" if results["quick"] else "full"
    return "\n".join([
        "## Photos of varying size: the default against the TF image classification tutorial",
        "",
        f"Mode: {mode}. Data: {c['train']} training and {c['test']} test JPEGs built by `python -m bench.photo_folder` "
        "from the first CIFAR-10 images of each class (10 classes): upscaled to 200-500 px on canvases of 1:1 to "
        "16:9, either orientation, the object at a random place, borders mirrored, blurred, noised and "
        "re-encoded. A proxy: the shapes and sizes of a user's photos, not their detail. Both train on `train/` "
        "(each holding out its own validation split) and are scored on `test/`. The tutorial's score is the "
        "better of its 15 epochs and its run to the suite's training time.",
        f"Command: `python -m bench.run --only {NAME}{' --quick' if results['quick'] else ''}`. Machine: "
        f"{results['machine']}. Load average at the end: {', '.join(f'{v:.1f}' for v in results['load'])}.",
        "",
        md_table(["recipe", "test acc %", "model", "train s"], rows),
        "",
        f"The suite is {gap:+.1f} points from the tutorial's best (bar: +{MARGIN:g}). The suite's command took "
        f"{suite['wall_seconds']:.0f} s wall and {suite['cpu_seconds']:.0f} CPU s in all (decoding, training, "
        f"evaluation, saving); its plan: {'; '.join(suite.get('plan_reasons') or [])}.",
        "",
    ])


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
