"""Image classification on MNIST: the suite's default configuration beside the keras.io simple MNIST convnet.

Measures test accuracy against training time for both (plot), training throughput, and single-example
latency through ``Predictor.predict`` vs the raw compiled forward vs ``model.predict``.
``python -m bench.run --only image_classification [--quick]`` runs it.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.common import (
    DOCS,
    batch_rate,
    batched_accuracy,
    interleaved_latency,
    machine,
    md_table,
    peak_rss_mb,
    plot_accuracy_curves,
    save_results,
    serving_memory,
    serving_memory_line,
    shared_data,
    train_with_snapshots,
)

NAME = "image_classification"
PLOT = DOCS / "bench_image_classification_curve.png"
PLOT_QUICK = DOCS / "bench_image_classification_curve_quick.png"  # quick runs never overwrite the full figure


def _suite_run(npz: Path, quick: bool, home: Path) -> dict:
    """Train the default config through the suite's trainer; snapshot weights at each epoch for the curve."""
    from suite.registry import get

    task = get("image_classification")
    overrides = {"epochs": 1, "max_train_examples": 6000} if quick else {}
    return train_with_snapshots(task, str(npz), overrides, name="mnist-default", home=home)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.ndim == 3 else arr).save(buf, format="PNG")
    return buf.getvalue()


def run(quick: bool) -> str:
    npz = shared_data("mnist", "mnist.npz")
    if npz is None:
        return "## Image classification (MNIST)\n\nSkipped: `mnist/mnist.npz` not found under SUITE_SHARED_DATA.\n"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from bench.baselines import mnist_convnet
    from suite.predictor import Predictor, make_forward

    with np.load(npz) as d:
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    y_test = y_test.astype(np.int64)
    x_test4 = x_test[..., None]
    home = Path(tempfile.mkdtemp(prefix="bench-ic-"))
    try:
        # ---- the suite's default configuration ---------------------------------------------------------
        suite = _suite_run(npz, quick, home)
        run_ = suite["run"]
        model = run_.load_model()
        forward = make_forward(model)
        for p in suite["points"]:
            model.load_weights(p.pop("snapshot"))
            p["test_accuracy"] = batched_accuracy(forward, x_test4, y_test)
        final = run_.metrics["test"]["accuracy"]  # best-by-validation weights, as the run keeps them
        n_train = suite["counts"].get("train", 0)
        suite_secs = sum(p["epoch_seconds"] for p in suite["points"])

        # ---- the keras.io baseline --------------------------------------------------------------------
        n_base = 6000 if quick else len(x_train)
        epochs_base = 1 if quick else mnist_convnet.EPOCHS
        keras.backend.clear_session()
        base_model, base_curve = mnist_convnet.train(x_train[:n_base], y_train[:n_base], epochs=epochs_base,
                                                     x_test=x_test, y_test=y_test)
        base_final = base_curve[-1]["test_accuracy"]
        base_secs = base_curve[-1]["seconds"]
        base_examples = int(n_base * 0.9) * epochs_base

        # ---- latency: one example through three paths ---------------------------------------------------
        predictor = Predictor(run_)
        png = _png(x_test[0])
        one = predictor.decode(png)[None]
        paths = {
            "predictor.predict (decode PNG + forward + postprocess)": (lambda: predictor.predict([png]), 20),
            "predictor.forward (raw compiled forward)": (lambda: predictor.forward(one), 20),
            "model.predict": (lambda: predictor.model.predict(one, verbose=0), 4),
        }
        lat = interleaved_latency(paths, rounds=5 if quick else 10)
        batch = x_test4[:256]
        batch_tput = batch_rate(lambda: np.asarray(predictor.forward(batch)), len(batch))
        pngs = [_png(x) for x in x_test[:256]]
        batch_predict = batch_rate(lambda: predictor.predict(pngs), len(pngs))
        base_forward = make_forward(base_model)
        base_one = mnist_convnet.prepare(x_test[:1], y_test[:1])[0]
        lat_base = interleaved_latency({"base": (lambda: base_forward(base_one), 20)}, rounds=5 if quick else 10)["base"]
        serve = serving_memory(run_.path, [_png(x) for x in x_test[:50]])
    finally:
        shutil.rmtree(home, ignore_errors=True)

    curves = {f"suite default ({suite['config']['model']}, {len(suite['points'])} ep)": suite["points"],
              f"keras.io simple convnet ({epochs_base} ep)": base_curve}
    plot = PLOT_QUICK if quick else PLOT
    plot_accuracy_curves(curves, plot, bar=99.3, ylabel="MNIST test accuracy (%)", title="MNIST: test accuracy against training time")
    results = {
        "quick": quick, "machine": machine(), "data": "mnist/mnist.npz",
        "suite": {"test_accuracy": final, "curve": suite["points"], "train_seconds_fit": suite_secs,
                  "run_train_seconds": run_.info.get("train_seconds"), "train_examples": n_train,
                  "examples_per_sec": n_train * len(suite["points"]) / suite_secs if suite_secs else None,
                  "config": suite["config"], "peak_rss_mb_after_train": suite["rss_after_train_mb"]},
        "baseline": {"test_accuracy": base_final, "curve": base_curve, "train_seconds": base_secs,
                     "examples_per_sec": base_examples / base_secs if base_secs else None},
        "latency_s": lat, "baseline_forward_latency_s": lat_base, "batch256_examples_per_sec": batch_tput,
        "batch256_predict_examples_per_sec": batch_predict,
        "peak_rss_mb": peak_rss_mb(), "serving_memory": serve,
    }
    save_results(NAME + ("_quick" if quick else ""), results)

    mode = "quick (6,000 training images, 1 epoch each)" if quick else "full"
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if quick else " --full")
    rows = [
        ["suite default: " + suite["config"]["model"], len(suite["points"]), f"{suite_secs:.0f}",
         f"{suite['points'][-1]['cpu_seconds']:.0f}", f"{100 * final:.2f}",
         f"{results['suite']['examples_per_sec']:.0f}"],
        ["keras.io simple MNIST convnet", epochs_base, f"{base_secs:.0f}", f"{base_curve[-1]['cpu_seconds']:.0f}",
         f"{100 * base_final:.2f}", f"{results['baseline']['examples_per_sec']:.0f}"],
    ]
    lat_rows = [[k, f"{1000 * v['p50']:.2f}", f"{1000 * v['p95']:.2f}"] for k, v in lat.items()]
    lat_rows.append(["baseline model, raw compiled forward", f"{1000 * lat_base['p50']:.2f}",
                     f"{1000 * lat_base['p95']:.2f}"])
    p50 = {k.split(" ")[0]: v["p50"] for k, v in lat.items()}
    return "\n".join([
        "## Image classification (MNIST)",
        "",
        f"Mode: {mode}. Data: `../shared/data/mnist/mnist.npz`; the suite trains on `x_train` minus a seeded "
        f"stratified 10% validation split ({n_train} images), the baseline on `x_train` with Keras' "
        "`validation_split=0.1`; both are scored on all 10,000 `x_test` images. Suite accuracy is the run's "
        "reported test accuracy (best-by-validation weights). Times are training seconds (validation included, "
        "per-epoch test scoring excluded) on a machine shared with other jobs, so wall times are pessimistic; "
        "train CPU s is the process's CPU time (all threads) over the same span, which contention does not "
        "inflate: on two idle cores the wall time would be about half of it at best.",
        f"Command: `{cmd}`. Machine: {results['machine']}.",
        "",
        md_table(["recipe", "epochs", "train s (wall)", "train CPU s", "test acc %", "train examples/s"], rows),
        "",
        f"![accuracy against training time]({plot.name})",
        "",
        "Single-example latency (ms, one 28x28 image; the paths called in turn, one call at a time):",
        "",
        md_table(["path", "p50", "p95"], lat_rows),
        "",
        f"Suite path / raw forward: {p50['predictor.predict'] / p50['predictor.forward']:.2f}x; "
        f"model.predict / suite path: {p50['model.predict'] / p50['predictor.predict']:.1f}x. "
        f"Batch of 256: {batch_predict:.0f} images/s through predictor.predict (PNG bytes: decode, forward, "
        f"postprocess), {batch_tput:.0f} images/s through the compiled forward on decoded arrays. "
        f"Peak RSS of the benchmark process: {results['peak_rss_mb']:.0f} MB.",
        "",
        serving_memory_line(serve, suite["rss_after_train_mb"]),
        "",
    ])
