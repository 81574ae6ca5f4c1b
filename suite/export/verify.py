"""Verification: run each written artifact on held-out examples and compare it with the Keras model.

Reported per format: top-1 agreement with Keras, the largest probability difference, the task metric
recomputed from the artifact's own outputs next to the Keras model's, and per-example latency p50 of both.
Text-output tasks compare strings (exact-match rate) instead of probabilities.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import ExportError


@dataclass
class Held:
    """Held-out examples as per-example feeds (batch of one), their labels, and the Keras reference."""

    names: list[str]
    feeds: list[dict[str, np.ndarray]]
    labels: list[Any]  # class indices, reference strings, or None when unknown
    split: str
    keras_out: list[Any] = field(default_factory=list)  # probability rows, or strings for text tasks
    keras_latency_ms: float = float("nan")


def to_feed(x, specs) -> dict[str, np.ndarray]:
    """One raw example (array, bytes, dict or tuple) as ``{input_name: batch-of-one array}``."""
    names = [s.name for s in specs]
    if isinstance(x, dict):
        parts = [x[n] for n in names]
    elif isinstance(x, (tuple, list)) and len(names) > 1:
        parts = list(x)
    else:
        parts = [x]
    feed = {}
    for spec, part in zip(specs, parts, strict=True):
        arr = np.asarray(part.numpy() if hasattr(part, "numpy") else part)
        arr = arr.astype(object) if arr.dtype.kind in "SUO" else arr.astype(spec.dtype.as_numpy_dtype)
        feed[spec.name] = arr[None]
    return feed


def _model_args(feed: dict[str, np.ndarray]):
    values = list(feed.values())
    return values[0] if len(values) == 1 else values


def keras_reference(task, model, meta: dict, held: Held) -> None:
    """Fill ``held.keras_out`` with the Keras model's outputs (and its per-example latency).

    Text-output models are called directly: their string output is what ``serving_default`` passes through.
    """
    from suite.predictor import make_forward

    forward = make_forward(model)
    outs, times = [], []
    for feed in held.feeds:
        args = _model_args(feed)
        start = time.perf_counter()
        if task.output_kind == "classes":
            out = np.asarray(forward(args), dtype=np.float32)[0]
        else:  # the model's own string output: what the default serving signature passes through
            out = _as_text(forward(args))
        times.append(time.perf_counter() - start)
        outs.append(out)
    if task.output_kind == "classes":
        stacked = np.stack(outs) if outs else np.zeros((0, len(meta["class_names"])))
        if not np.all(np.isfinite(stacked)):
            raise ExportError("the Keras model's outputs are not finite (diverged weights); nothing to export")
    held.keras_out = outs
    held.keras_latency_ms = _p50_ms(times[1:] or times)


def _p50_ms(times: list[float]) -> float:
    return float(np.median(times) * 1000.0) if times else float("nan")


def _as_text(value) -> str:
    value = np.asarray(value).reshape(-1)
    item = value[0] if value.size else b""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def verify_runner(task, runner, held: Held, *, warmup: int = 2) -> dict[str, Any]:
    """Run ``runner`` (one feed -> main output) on every held-out example and compare with Keras."""
    for feed in held.feeds[:warmup]:
        runner(feed)
    outs, times = [], []
    for feed in held.feeds:
        start = time.perf_counter()
        out = runner(feed)
        times.append(time.perf_counter() - start)
        outs.append(out)
    return compare(task, outs, held, times)


def compare(task, outs: list, held: Held, times: list[float]) -> dict[str, Any]:
    n = len(outs)
    ver: dict[str, Any] = {"examples": n, "split": held.split, "latency_ms_p50": _p50_ms(times),
                           "keras_latency_ms_p50": held.keras_latency_ms}
    if task.output_kind == "classes":
        probs = np.stack([np.asarray(o, dtype=np.float32).reshape(-1) for o in outs]) if n else np.zeros((0, 0))
        ref = np.stack(held.keras_out) if n else np.zeros((0, 0))
        ver["top1_agreement"] = float(np.mean(probs.argmax(1) == ref.argmax(1))) if n else 0.0
        diff = np.abs(probs - ref) if n else np.zeros(1)
        ver["max_abs_diff"] = float(np.nanmax(diff)) if np.all(np.isfinite(probs)) else float("inf")
        ver["mean_abs_diff"] = float(np.mean(diff))
        ver["metric_name"] = "accuracy"
        if held.labels and held.labels[0] is not None:
            labels = np.asarray(held.labels, dtype=np.int64)
            ver["metric"] = float(np.mean(probs.argmax(1) == labels))
            ver["keras_metric"] = float(np.mean(ref.argmax(1) == labels))
            ver["metric_delta"] = ver["metric"] - ver["keras_metric"]
        else:
            ver["metric"] = None
    else:
        texts = [_as_text(o) for o in outs]
        ver["exact_match_agreement"] = float(np.mean([a == b for a, b in zip(texts, held.keras_out, strict=True)]))
        ver["metric_name"] = "exact_match"
        if held.labels and held.labels[0] is not None:
            refs = [_as_text(lab) for lab in held.labels]
            ver["metric"] = float(np.mean([a == b for a, b in zip(texts, refs, strict=True)]))
            ver["keras_metric"] = float(np.mean([a == b for a, b in zip(held.keras_out, refs, strict=True)]))
        else:
            ver["metric"] = None
    return ver


# ---- the .keras file, reloaded in a fresh process --------------------------------------------------
_FRESH = r"""
import importlib, json, os, sys, time
import numpy as np
model_path, feeds_path, out_path, modname, moddir, keras_modules = sys.argv[1:7]
# Load the task's plugin the way `suite` does (its entry point registers its serialisable layers); a task
# that no entry point provides (a test's) is imported from its own module.
from suite.registry import Registry, discover_entry_points, get_registry
eps = [ep for ep in discover_entry_points() if modname == ep.module or modname.startswith(ep.module + ".")]
if eps:
    registry = Registry()
    for ep in eps:
        registry.load_entry_point(ep)
    if registry.failures:
        sys.exit("plugin failed to load: " + registry.failures[0].reason)
else:
    try:
        importlib.import_module(modname)
    except ImportError:
        if moddir:
            sys.path.insert(0, moddir)
        try:
            importlib.import_module(modname)
        except ImportError:
            get_registry()  # every installed plugin, as `suite` itself would load them
for name in json.loads(keras_modules):  # the task's serializable classes, as Run.load_model imports them
    importlib.import_module(name)
import keras
import tensorflow as tf
model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
data = np.load(feeds_path, allow_pickle=False)
names = json.loads(str(data["names"]))
n = int(data["n"])
fwd = tf.function(lambda *a: model(a[0] if len(a) == 1 else list(a), training=False), reduce_retracing=True)
outs, times = [], []
for i in range(n):
    args = [data[f"{k}__{i}"] for k in names]
    t = time.perf_counter()
    out = np.asarray(fwd(*args))
    outs.append(out.astype(bytes if out.dtype.kind in "SUO" else np.float32).reshape(-1))
    times.append(time.perf_counter() - t)
np.save(out_path, np.stack(outs) if outs else np.zeros((0, 0), np.float32))
print(json.dumps({"latency_ms_p50": float(np.median(times[1:] or times) * 1000) if times else None}))
"""


def verify_keras_fresh(task, path: Path, held: Held, *, timeout: float = 300) -> dict[str, Any]:
    """Reload the re-saved ``.keras`` with ``safe_mode=True`` in a new interpreter and compare its outputs."""
    module = type(task).__module__
    moddir = str(Path(sys.modules[module].__file__).resolve().parent) if module in sys.modules and getattr(
        sys.modules[module], "__file__", None) else ""
    with tempfile.TemporaryDirectory(prefix="suite-export-") as tmp:
        feeds_path, out_path = Path(tmp) / "feeds.npz", Path(tmp) / "out.npy"
        arrays: dict[str, Any] = {"names": json.dumps(held.names), "n": len(held.feeds)}
        for i, feed in enumerate(held.feeds):
            for k, v in feed.items():
                arrays[f"{k}__{i}"] = v.astype(bytes) if v.dtype == object else v
        np.savez(feeds_path, **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", _FRESH, str(path), str(feeds_path), str(out_path), module,
                               moddir, json.dumps(list(task.keras_modules))], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"model.keras does not reload with safe_mode=True in a fresh process: {tail}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        outs = list(np.load(out_path, allow_pickle=False))
    ver = {"fresh_process_safe_mode_reload": True}
    ver.update(compare(task, outs, held, []))
    ver["latency_ms_p50"] = info.get("latency_ms_p50")
    return ver
