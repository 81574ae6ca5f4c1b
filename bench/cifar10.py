"""Benchmark: CIFAR-10 test accuracy against training time, the suite's default beside two public Keras recipes.

The suite trains ``suite train image_classification --data cifar10`` with ``time_budget_minutes`` set to each
budget (its plan sizes model and epochs to it); each recipe trains once for the longest budget with snapshots at
every budget (both hold one learning rate over that span, so a snapshot is what a run stopped there would give).
All are scored on the 10,000 images of ``cifar10/test``. ``python -m bench.run --only cifar10 [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    DOCS,
    RESULTS,
    batched_accuracy,
    cli_train,
    machine,
    md_table,
    peak_rss_mb,
    plot_accuracy_curves,
    save_results,
    shared_data,
    timed_snapshots,
)

NAME = "cifar10"
PLOT = DOCS / "bench_cifar10_curve.png"
PLOT_QUICK = DOCS / "bench_cifar10_curve_quick.png"
BUDGETS_MIN = (2, 5, 10, 20)
QUICK_BUDGETS_MIN = (0.5, 1)
BAR = 85.0


def load_split(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels of ``root/<class>/*.jpg`` (PIL decodes, as the suite's loader does)."""
    from PIL import Image

    xs, ys = [], []
    for i, name in enumerate(names):
        for f in sorted((root / name).iterdir()):
            with Image.open(f) as img:
                xs.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            ys.append(i)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def suite_points(task, data: str, bundle, budgets, home: Path, quick: bool) -> list[dict]:
    """One suite run per budget (default config + time_budget_minutes), scored by the run itself."""
    import keras

    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    points = []
    for budget in budgets:
        keras.backend.clear_session()
        overrides = {"time_budget_minutes": budget, **({"max_train_examples": 5000} if quick else {})}
        cpu, wall = time.process_time(), time.perf_counter()
        run = train(task, data, overrides, name=f"cifar-{budget}", store=RunStore(home),
                    options=TrainOptions(tensorboard=False), bundle=bundle)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if run.status != "completed":
            raise RuntimeError(f"suite run at {budget} min ended {run.status}: {run.info.get('error')}")
        epochs = [e for e in _events(run) if e.get("event") == "epoch_end"]
        fit_s = sum(float(e["seconds"]) for e in epochs)
        config = run.config
        points.append({"budget_min": budget, "seconds": fit_s, "test_accuracy": run.metrics["test"]["accuracy"],
                       "epochs": len(epochs), "wall_seconds": wall, "cpu_seconds": cpu,
                       "model": f"{config['model']} width {config['width']}", "plan": run.info.get("plan", {}),
                       "examples_per_sec": (run.info.get("counts") or {}).get("train", 0) * len(epochs) / fit_s
                       if fit_s else None})
    return points


def _events(run):
    from suite.events import iter_events

    return list(iter_events(run.events_path))


def recipe_points(name: str, x_train, y_train, x_test, y_test, budgets, home: Path) -> list[dict]:
    """One long run of a recipe with weight snapshots at every budget, each scored on the test set."""
    import keras
    import tensorflow as tf

    from bench.baselines import cifar_recipes
    from suite.predictor import make_forward

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = cifar_recipes.build(name, x_train)
    at = tuple(60.0 * b for b in budgets)
    snaps = timed_snapshots(home / f"{name}-snapshots", 0.0, budget_s=max(at), at=at)
    ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=0)
          .batch(cifar_recipes.BATCH_SIZE).prefetch(tf.data.AUTOTUNE))
    cpu = time.process_time()
    model.fit(ds, epochs=10_000, verbose=0, callbacks=[snaps])
    cpu = time.process_time() - cpu
    forward = make_forward(model)
    points = []
    for budget, p in zip(budgets, snaps.points, strict=False):
        model.load_weights(p["snapshot"])
        points.append({"budget_min": budget, "seconds": p["seconds"], "steps": p["step"],
                       "epochs": p["step"] * cifar_recipes.BATCH_SIZE / len(x_train),
                       "test_accuracy": batched_accuracy(forward, x_test, y_test)})
    points[-1]["cpu_seconds"] = cpu
    return points


def pipeline_rate(task, bundle, config, seconds: float = 10.0) -> float:
    """Images/s of the suite's training input pipeline alone (no model), as the trainer builds it."""
    from suite.trainer import TrainOptions, build_pipeline

    ds = build_pipeline(task, bundle.train, batch_size=config.batch_size, training=True, config=config,
                        meta=bundle.meta, count=bundle.counts["train"], options=TrainOptions())
    it = iter(ds)
    next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += int(next(it)[0].shape[0])
    return n / (time.perf_counter() - start)


def run(quick: bool) -> str:
    root = shared_data("cifar10")
    if root is None:
        return "## CIFAR-10: accuracy against training time\n\nSkipped: `cifar10/` not found under SUITE_SHARED_DATA.\n"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from suite.data import parse_source
    from suite.registry import get

    budgets = QUICK_BUDGETS_MIN if quick else BUDGETS_MIN
    task = get("image_classification")
    config = task.config_class()
    t = time.perf_counter()
    bundle = task.load_data(parse_source(str(root)), config)
    load_s = time.perf_counter() - t
    names = list(bundle.meta["class_names"])
    x_train, y_train = load_split(root / "train", names)
    x_test, y_test = load_split(root / "test", names)
    if quick:
        x_train, y_train = x_train[::10], y_train[::10]
    home = Path(tempfile.mkdtemp(prefix="bench-cifar-"))
    try:
        pipe = pipeline_rate(task, bundle, config)
        suite = suite_points(task, str(root), bundle, budgets, home, quick)
        recipes = {name: recipe_points(name, x_train, y_train, x_test, y_test, budgets, home)
                   for name in ("tf_cnn_tutorial", "keras_resnet20")}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    labels = {"tf_cnn_tutorial": "TF CNN tutorial", "keras_resnet20": "Keras ResNet20 v1 example"}
    curves = {"suite default (time budget)": suite, **{labels[k]: v for k, v in recipes.items()}}
    plot = PLOT_QUICK if quick else PLOT
    plot_accuracy_curves(curves, plot, bar=BAR, ylabel="CIFAR-10 test accuracy (%)",
                         title="CIFAR-10: test accuracy against training time")
    results = {"quick": quick, "machine": machine(), "data": "cifar10/test (10,000 images)",
               "load_seconds": load_s, "pipeline_images_per_sec": pipe, "suite": suite, "recipes": recipes,
               "peak_rss_mb": peak_rss_mb(), "load": os.getloadavg()}
    previous = RESULTS / f"{NAME}.json"
    if not quick and previous.exists():  # the default command's figures (python -m bench.cifar10 --default) stay
        results["default"] = json.loads(previous.read_text()).get("default")
    save_results(NAME + ("_quick" if quick else ""), results)
    return section(results, plot, quick)


def section(results: dict, plot: Path, quick: bool) -> str:
    suite, recipes = results["suite"], results["recipes"]
    rows = []
    for i, p in enumerate(suite):
        tut, res = recipes["tf_cnn_tutorial"][i], recipes["keras_resnet20"][i]
        rows.append([f"{p['budget_min']:g}", f"{100 * p['test_accuracy']:.2f}",
                     f"{p['model']}, {p['epochs']} ep, {p['seconds']:.0f} s", f"{100 * tut['test_accuracy']:.2f}",
                     f"{100 * res['test_accuracy']:.2f}", f"{res['epochs']:.1f}"])
    top = suite[-1]
    default = results.get("default")
    default_line = (
        f"The default command with no `--set` (`{default['command']}`, its own 15-minute budget): "
        f"**{100 * default['test_accuracy']:.2f}%** on the 10,000 test images, {default['wall_seconds']:.0f} s wall "
        f"for the whole command (loading, training, evaluation, saving), {default['cpu_seconds']:.0f} CPU s, "
        f"peak RSS {default['peak_rss_mb']:.0f} MB; `python -m bench.cifar10 --default` measures it."
        if default else "")
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if quick else " --full")
    mode = "quick (5,000 training images, budgets under a minute)" if quick else "full"
    return "\n".join([
        "## CIFAR-10: accuracy against training time",
        "",
        f"Mode: {mode}. Data: `../shared/data/cifar10` (JPEG class folders); the suite trains on `train/` less a "
        "seeded stratified 10% validation split (45,000 images), the recipes on all 50,000 `train/` images; all "
        "are scored on the 10,000 `test/` images. The suite runs its default configuration with "
        "`--set time_budget_minutes=N` (its plan picks width, epochs and schedule for the budget); the recipes "
        "run once with weight snapshots at each budget. Times are training seconds (the suite: the sum of its "
        "epochs, validation included).",
        f"Command: `{cmd}`. Machine: {results['machine']}. Load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in results['load'])}.",
        "",
        md_table(["budget (min)", "suite test acc %", "suite model, epochs, train s", "TF CNN tutorial %",
                  "Keras ResNet20 %", "ResNet20 epochs done"], rows),
        "",
        f"![CIFAR-10 accuracy against training time]({plot.name})",
        "",
        default_line,
        "",
        f"At {top['budget_min']:g} min the suite ran {top['examples_per_sec']:.0f} training images/s; its input "
        f"pipeline alone (cached uint8 pixels, shuffle, batch, prefetch; augmentation runs in the model) gives "
        f"{results['pipeline_images_per_sec']:.0f} images/s, so it does not starve the model. Loading the "
        f"folder (60,000 JPEG decodes) took {results['load_seconds']:.0f} s; peak RSS of the benchmark process "
        f"{results['peak_rss_mb']:.0f} MB.",
        "",
    ])


def default_run(root: Path) -> dict:
    """The README's command as a user types it (`suite train image_classification --data cifar10`, no --set):
    wall and CPU seconds of the whole command, its peak RSS and the run's test accuracy."""
    run = cli_train(root, prefix="bench-cifar-default-")
    return {"command": "suite train image_classification --data ../shared/data/cifar10",
            "test_accuracy": run["metrics"]["test"]["accuracy"], "wall_seconds": run["wall_seconds"],
            "cpu_seconds": run["cpu_seconds"], "peak_rss_mb": run["peak_rss_mb"],
            "train_seconds": run["metrics"].get("train_seconds"),
            "plan": (run["info"].get("plan") or {}).get("values"),
            "plan_reasons": (run["info"].get("plan") or {}).get("reasons"),
            "epochs_done": run["info"].get("epochs_done"), "load": os.getloadavg()}


def main(argv=None) -> int:
    """``python -m bench.cifar10 --default``: measure the default command and add it to cifar10.json (the
    headline row), keeping the curve's figures."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--default", action="store_true", required=True)
    parser.parse_args(argv)
    root = shared_data("cifar10")
    if root is None:
        raise SystemExit("cifar10/ not found under SUITE_SHARED_DATA")
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["default"] = default_run(root)
    save_results(NAME, results)
    print(json.dumps(results["default"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
