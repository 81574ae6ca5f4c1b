"""The app's sample models against real inputs of their kind: what a user who tries a sample model first gets.

Each sample model is trained as the app trains it (the plugin's built-in sample and ``sample_overrides``) and
scored on real data it never saw, each input going through ``Predictor.predict`` as an upload would:

- image: MNIST test digits (white on black, as the drawing pad draws them) and the same digits inverted (dark
  ink on light paper, as a photo of a written digit), with how often the low-confidence notice was given;
- sentiment: SST-2 test sentences (real movie-review phrases; the sample knows a few dozen adjectives).

``python -m bench.run --only sample_models [--quick]``.
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np

from bench.common import machine, md_table, save_results, shared_data

NAME = "sample_models"


def _train_sample(task_name: str):
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    task = get(task_name)
    t = time.perf_counter()
    run = train(task, "sample", dict(task.sample_overrides), name=f"{task_name}-sample",
                store=RunStore(os.environ["SUITE_HOME"]), options=TrainOptions(tensorboard=False))
    if run.status != "completed":
        raise RuntimeError(f"sample run ended {run.status}: {run.info.get('error')}")
    return run, time.perf_counter() - t


def _score(predictor, raws: list, labels: list[str]) -> dict:
    results = []
    for i in range(0, len(raws), 100):
        results += predictor.predict(raws[i:i + 100], top_k=1)
    hits = [r["label"] == y for r, y in zip(results, labels, strict=True)]
    # doubts only (low confidence, unknown words): not the notes on what was done to the input
    doubtful = [bool(predictor.task.output_notes(r, predictor.meta)) for r in results]
    return {"n": len(raws), "accuracy": float(np.mean(hits)), "noticed": float(np.mean(doubtful)),
            "accuracy_unnoticed": float(np.mean([h for h, d in zip(hits, doubtful, strict=True) if not d] or [0.0])),
            "wrong_and_noticed": float(np.mean([d for h, d in zip(hits, doubtful, strict=True) if not h] or [0.0]))}


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def image(quick: bool) -> dict:
    from suite.predictor import Predictor

    path = shared_data("mnist", "mnist.npz")
    if path is None:
        return {"skipped": "mnist/mnist.npz not found under SUITE_SHARED_DATA"}
    run, seconds = _train_sample("image_classification")
    n = 500 if quick else 2000
    with np.load(path) as data:
        x, y = data["x_test"][:n], [str(int(v)) for v in data["y_test"][:n]]
    predictor = Predictor(run)
    return {"train_seconds": seconds, "sample_test_accuracy": (run.metrics.get("test") or {}).get("accuracy"),
            "mnist": _score(predictor, [_png(a) for a in x], y),
            "mnist_inverted": _score(predictor, [_png(255 - a) for a in x], y)}


def sentiment(quick: bool) -> dict:
    from suite.predictor import Predictor
    from suite_plugins.sentiment.data import read_table

    folder = shared_data("sst2")
    if folder is None or not (folder / "test.tsv").is_file():
        return {"skipped": "sst2/test.tsv not found under SUITE_SHARED_DATA"}
    run, seconds = _train_sample("sentiment")
    texts, labels = read_table(folder / "test.tsv")
    n = 500 if quick else len(texts)
    predictor = Predictor(run)
    names = predictor.meta["class_names"]
    gold = [names[int(v)] if str(v).isdigit() else str(v) for v in labels[:n]]
    return {"train_seconds": seconds, "sample_test_accuracy": (run.metrics.get("test") or {}).get("accuracy"),
            "sst2": _score(predictor, list(texts[:n]), gold)}


PARTS = {"image_classification": image, "sentiment": sentiment}


def run(quick: bool) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["SUITE_HOME"] = tempfile.mkdtemp(prefix="bench-samples-")
    results = {"quick": quick, "machine": machine(), "parts": {}}
    for name, fn in PARTS.items():
        try:
            results["parts"][name] = fn(quick)
        except Exception as err:  # one part's failure is reported, the other still runs
            results["parts"][name] = {"skipped": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    results["load"] = os.getloadavg()
    save_results(NAME + ("_quick" if quick else ""), results)
    return section(results)


def section(results: dict) -> str:
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if results["quick"] else " --full")
    rows = []
    for name, res in results["parts"].items():
        if "skipped" in res:
            rows.append([name, "-", "-", "-", "-", "-", "-", res["skipped"]])
            continue
        for key, scored in res.items():
            if not isinstance(scored, dict):
                continue
            rows.append([name, key.replace("_", " "), f"{res['train_seconds']:.0f}",
                         f"{100 * res['sample_test_accuracy']:.1f}" if res.get("sample_test_accuracy") else "-",
                         f"{scored['n']:,}", f"{100 * scored['accuracy']:.1f}", f"{100 * scored['noticed']:.0f}",
                         f"{100 * scored['wrong_and_noticed']:.0f}"])
    table = md_table(["sample model", "real inputs", "train s", "own test acc %", "inputs", "acc on them %",
                      "with a doubt notice %", "mistakes with a notice %"], rows)
    return ("## Sample models on real inputs\n\n"
            "Each sample model is trained as the app trains it and given real inputs it never saw, one upload at a "
            "time through `Predictor.predict`: its own test accuracy (on the synthetic or built-in sample) says "
            "little about these. \"Doubt notice\": the prediction carried a notice (low confidence, input unlike "
            f"the training data); the inverted digits also each carry the note that the model inverted them. Command: `{cmd}`. Machine: {results['machine']}. Load average at the end: "
            f"{', '.join(f'{x:.1f}' for x in results['load'])}.\n\n" + table + "\n")
