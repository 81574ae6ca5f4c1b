"""Sentiment on SST-2: the suite's default configuration beside the keras.io "text classification from scratch".

Measures test accuracy against training time for both (plot), training throughput, and single-sentence
latency through ``Predictor.predict`` vs the raw compiled forward vs ``model.predict``.
``python -m bench.run --only sentiment [--quick]`` runs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
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

NAME = "sentiment"
PLOT = DOCS / "bench_sentiment_curve.png"
PLOT_QUICK = DOCS / "bench_sentiment_curve_quick.png"  # quick runs never overwrite the full figure
QUICK_TRAIN = 8000
SENTENCE = "A warm, funny and beautifully acted film, though the ending drags a little."


def _suite_run(folder: Path, quick: bool, home: Path) -> dict:
    """Train the default config through the suite's trainer; snapshot weights at each epoch for the curve."""
    from suite.registry import get

    task = get(NAME)
    overrides = {"max_train_examples": QUICK_TRAIN, "epochs": 2} if quick else {}
    return train_with_snapshots(task, str(folder), overrides, name="sst2-default", home=home)


def run(quick: bool) -> str:
    folder = shared_data("sst2")
    if folder is None or not (folder / "train.tsv").is_file():
        return "## Sentiment (SST-2)\n\nSkipped: `sst2/train.tsv` not found under SUITE_SHARED_DATA.\n"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from bench.baselines import text_classification as recipe
    from suite.predictor import Predictor, make_forward
    from suite_plugins.sentiment.data import read_table

    train_x, train_y = read_table(folder / "train.tsv")
    dev_x, dev_y = read_table(folder / "dev.tsv")
    test_x, test_y = read_table(folder / "test.tsv")
    train_y, dev_y = np.array(train_y, dtype=np.int64), np.array(dev_y, dtype=np.int64)
    test_texts, test_labels = np.array(test_x, dtype=object), np.array(test_y, dtype=np.int64)
    home = Path(tempfile.mkdtemp(prefix="bench-sentiment-"))
    try:
        # ---- the suite's default configuration -----------------------------------------------------------
        suite = _suite_run(folder, quick, home)
        run_ = suite["run"]
        model = run_.load_model()
        forward = make_forward(model)
        for p in suite["points"]:
            model.load_weights(p.pop("snapshot"))
            p["test_accuracy"] = batched_accuracy(forward, test_texts, test_labels, batch=512)
        final = run_.metrics["test"]["accuracy"]  # best-by-validation (dev.tsv) weights, as the run keeps them
        n_train = suite["counts"].get("train", 0)
        suite_secs = sum(p["epoch_seconds"] for p in suite["points"])

        # ---- the keras.io baseline ------------------------------------------------------------------------
        n_base = QUICK_TRAIN if quick else len(train_x)
        epochs_base = 1 if quick else recipe.EPOCHS
        keras.backend.clear_session()
        _, base_model, base_curve = recipe.train(train_x[:n_base], train_y[:n_base], val_texts=dev_x,
                                                 val_labels=dev_y, test_texts=test_x, test_labels=test_labels,
                                                 epochs=epochs_base)
        base_final = base_curve[-1]["test_accuracy"]
        base_secs = base_curve[-1]["seconds"]

        # ---- latency: one sentence through three paths ----------------------------------------------------
        predictor = Predictor(run_)
        one = predictor.task.stack_inputs([predictor.decode(SENTENCE)])
        repeats = 50 if quick else 200
        rounds = 5 if quick else 10  # the paths are called in turn so that they see the same load
        lat = interleaved_latency({
            "predictor.predict (clean text + forward + postprocess)": (
                lambda: predictor.predict([SENTENCE]), repeats // rounds),
            "predictor.forward (raw compiled forward)": (lambda: predictor.forward(one), repeats // rounds),
            "model.predict": (lambda: predictor.model.predict(one, verbose=0), max(4, repeats // rounds // 4)),
        }, rounds)
        batch = test_texts[:256]
        batch_tput = batch_rate(lambda: np.asarray(predictor.forward(batch)), len(batch))
        raw_batch = list(test_x[:256])
        batch_predict = batch_rate(lambda: predictor.predict(raw_batch), len(raw_batch))
        t = time.perf_counter()
        exp = predictor.explain(SENTENCE)
        explain_s = time.perf_counter() - t
        serve = serving_memory(run_.path, list(test_x[:50]))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    curves = {f"suite default ({suite['config']['model']}, {len(suite['points'])} ep)": suite["points"],
              f"keras.io text classification from scratch ({epochs_base} ep)": base_curve}
    plot = PLOT_QUICK if quick else PLOT
    plot_accuracy_curves(curves, plot, bar=84.0, ylabel="SST-2 test accuracy (%)", title="SST-2: test accuracy against training time")
    suite_tput = n_train * len(suite["points"]) / suite_secs if suite_secs else None
    base_tput = n_base * epochs_base / base_secs if base_secs else None
    results = {
        "quick": quick, "machine": machine(), "data": "sst2/{train,dev,test}.tsv",
        "suite": {"test_accuracy": final, "curve": suite["points"], "train_seconds_fit": suite_secs,
                  "run_train_seconds": run_.info.get("train_seconds"), "train_examples": n_train,
                  "examples_per_sec": suite_tput, "config": suite["config"],
                  "peak_rss_mb_after_train": suite["rss_after_train_mb"]},
        "baseline": {"test_accuracy": base_final, "curve": base_curve, "train_seconds": base_secs,
                     "train_examples": n_base, "examples_per_sec": base_tput},
        "latency_s": lat, "batch256_sentences_per_sec": batch_tput,
        "batch256_predict_sentences_per_sec": batch_predict, "explain_seconds": explain_s,
        "explain_tokens": len(exp.data["tokens"]) if exp else 0, "peak_rss_mb": peak_rss_mb(),
        "serving_memory": serve,
    }
    save_results(NAME + ("_quick" if quick else ""), results)

    mode = (f"quick (first {QUICK_TRAIN:,} training sentences; suite 2 epochs, recipe 1 epoch)" if quick
            else "full (all 67,349 training sentences)")
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if quick else " --full")
    rows = [
        ["suite default: " + suite["config"]["model"], len(suite["points"]), f"{suite_secs:.0f}",
         f"{suite['points'][-1]['cpu_seconds']:.0f}", f"{100 * final:.2f}", f"{suite_tput:.0f}"],
        ["keras.io text classification from scratch", epochs_base, f"{base_secs:.0f}",
         f"{base_curve[-1]['cpu_seconds']:.0f}", f"{100 * base_final:.2f}", f"{base_tput:.0f}"],
    ]
    lat_rows = [[k, f"{1000 * v['p50']:.2f}", f"{1000 * v['p95']:.2f}"] for k, v in lat.items()]
    p50 = {k.split(" ")[0]: v["p50"] for k, v in lat.items()}
    return "\n".join([
        "## Sentiment (SST-2)",
        "",
        f"Mode: {mode}. Data: `../shared/data/sst2/`: both train on `train.tsv` and validate on `dev.tsv` "
        f"(872 sentences); both are scored on all {len(test_labels):,} labelled sentences of `test.tsv`. Suite "
        "accuracy is the run's reported test accuracy (best-by-validation weights). Times are training seconds "
        "(validation included, per-epoch test scoring excluded; the recipe's include its vocabulary `adapt`) on a "
        "machine shared with other jobs, so wall times are pessimistic; CPU s is the process's CPU time.",
        f"Command: `{cmd}`. Machine: {results['machine']}.",
        "",
        md_table(["recipe", "epochs", "train s (wall)", "train CPU s", "test acc %", "train examples/s"], rows),
        "",
        f"![accuracy against training time]({plot.name})",
        "",
        f"Single-sentence latency (ms, {len(SENTENCE)} characters):",
        "",
        md_table(["path", "p50", "p95"], lat_rows),
        "",
        f"Suite path / raw forward: {p50['predictor.predict'] / p50['predictor.forward']:.2f}x; "
        f"model.predict / suite path: {p50['model.predict'] / p50['predictor.predict']:.1f}x. "
        f"Batch of 256 test sentences: {batch_predict:.0f} sentences/s through predictor.predict (clean text, "
        f"forward, postprocess), {batch_tput:.0f} sentences/s through the compiled forward. "
        f"Occlusion explanation of the sentence: {1000 * explain_s:.0f} ms. "
        f"Peak RSS of the benchmark process: {results['peak_rss_mb']:.0f} MB.",
        "",
        serving_memory_line(serve, suite["rss_after_train_mb"]),
        "",
    ])


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))
