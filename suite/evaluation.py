"""Generic evaluation reports: the classification report every classification task inherits."""

from __future__ import annotations

from typing import Any

import numpy as np

from suite import progress


def collect_predictions(task, model, ds, config, meta: dict, *, limit: int = 0, batch_size: int = 128,
                        keep_inputs: int = 2000):
    """Run ``model`` over an unbatched ``(x, y)`` split; return probabilities, labels and the first inputs."""
    import tensorflow as tf

    if limit:
        ds = ds.take(limit)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    probs, labels, inputs = [], [], []
    for x, y in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        probs.append(np.asarray(forward(x), dtype=np.float32))
        labels.append(np.asarray(y).reshape(-1))
        progress.advance(len(labels[-1]))
        if sum(len(i) for i in inputs) < keep_inputs:
            inputs.append(np.asarray(x))
    if not probs:
        return np.zeros((0, len(meta["class_names"])), np.float32), np.zeros(0, np.int64), []
    kept = [row for batch in inputs for row in batch][:keep_inputs]
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64), kept


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, top-k, macro-F1, per-class precision/recall/F1, confusion matrix, ROC-AUC for 2 classes."""
    n = len(class_names)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    conf = np.zeros((n, n), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    total = int(conf.sum())
    tp = np.diag(conf).astype(np.float64)
    support = conf.sum(axis=1).astype(np.float64)
    predicted = conf.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0
    out: dict[str, Any] = {
        "examples": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    for k in (3, 5):
        if n > k:
            topk = np.argsort(-probs, axis=1)[:, :k]
            out[f"top{k}_accuracy"] = float((topk == labels[:, None]).any(axis=1).mean()) if total else 0.0
    if n == 2 and total and len(np.unique(labels)) == 2:
        out["roc_auc"] = roc_auc(probs[:, 1], labels)
        out["f1"] = float(f1[1])
    out["per_class"] = [
        {"class": class_names[i], "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i in range(n)
    ]
    out["confusion_matrix"] = conf.tolist()
    out["class_names"] = list(class_names)
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get their mean rank)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confident_mistakes(task, probs, labels, inputs, class_names, k: int = 12) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions the model was surest of, with a preview of each input where kept."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]])][:k]
    out = []
    for i in order:
        item = {"index": int(i), "true": class_names[labels[i]], "predicted": class_names[pred[i]],
                "confidence": float(probs[i, pred[i]])}
        if i < len(inputs):
            preview = task.preview(inputs[i])
            item["preview"] = preview if isinstance(preview, str) else None
            if isinstance(preview, bytes):
                import base64

                item["preview_png"] = base64.b64encode(preview).decode()
        out.append(item)
    return out


def classification_report(task, model, ds, config, meta: dict, *, limit: int = 0) -> dict[str, Any]:
    probs, labels, inputs = collect_predictions(task, model, ds, config, meta, limit=limit)
    report = classification_metrics(probs, labels, meta["class_names"])
    report["confident_mistakes"] = confident_mistakes(task, probs, labels, inputs, meta["class_names"])
    return report


def serving_latency_ms(task, model, ds, meta: dict, *, calls: int = 21) -> float | None:
    """p50 milliseconds of one test input through the compiled forward and the task's postprocess, the way
    ``Predictor.predict`` serves it once warm: the figure the Runs page sets beside a teacher and its student.
    Classifiers only (a text task's decoding loop compiles for seconds first); None when there is no input."""
    import time

    from suite.predictor import make_forward

    if task.output_kind != "classes":
        return None
    xs = [np.asarray(x) for x, _ in ds.take(calls).as_numpy_iterator()]
    if not xs:
        return None
    forward = make_forward(model)
    times = []
    for x in [xs[0], *xs]:  # the first call traces the graph: not counted
        started = time.perf_counter()
        task.postprocess(task.predict_batch(forward, x[None], meta), meta)
        times.append(time.perf_counter() - started)
    return round(float(np.median(times[1:])) * 1e3, 3)
