"""The prediction path shared by the CLI, the app and benchmarks: decode -> compiled forward -> postprocess."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import InputError, RunError
from suite.runstore import Run, RunStore


def make_forward(model):
    """The model's inference call compiled once per input signature (what ``predict`` pays for per call)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    forward.model = model  # lets a task's predict_batch reach model helpers (e.g. a preset's tokenizer)
    return forward


class Predictor:
    """A loaded model plus its task. Thread-safe: one lock per model guards the forward call."""

    def __init__(self, run: Run | str | Path, *, model=None):
        self.run = run if isinstance(run, Run) else RunStore().get(run)
        self.task = self.run.task()
        self.meta = self.run.meta
        if not self.meta:
            raise RunError(f"run {self.run.name!r} has no meta.json; it did not finish setting up")
        self.model = model if model is not None else self.run.load_model()
        self.forward = make_forward(self.model)
        self.lock = threading.Lock()

    def decode(self, raw: bytes | str | Path) -> np.ndarray:
        if isinstance(raw, Path):
            raw = read_input_file(raw)
        return self.task.decode_input(raw, self.meta)

    def predict(self, raws: list[Any], top_k: int = 5) -> list[dict]:
        """One result per input, each with ``notices``: plain lines on what was done to the input and why the
        answer may be doubtful (empty when there is nothing to say)."""
        if not raws:
            return []
        batch = self.task.stack_inputs([self.decode(r) for r in raws])
        with self.lock:
            outputs = self.task.predict_batch(self.forward, batch, self.meta)
        results = self.task.postprocess(outputs, self.meta, top_k=top_k)
        for raw, result in zip(raws, results, strict=True):
            result["notices"] = self._notes(raw, result)
        return results

    def _notes(self, raw, result: dict) -> list[str]:
        notes: list[str] = []
        for hook, arg in ((self.task.input_notes, raw), (self.task.output_notes, result)):
            try:
                notes += [str(n) for n in hook(arg, self.meta) or []]
            except Exception:  # noqa: BLE001 - a note is advice; the prediction stands without it
                pass
        return notes

    def predict_one(self, raw: Any, top_k: int = 5) -> dict:
        return self.predict([raw], top_k=top_k)[0]

    def explain(self, raw: Any):
        x = self.decode(raw)
        with self.lock:
            return self.task.explain(self.model, x, self.meta)


def read_input_file(path: Path, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read an input file for predict, refusing missing, unreadable or oversized files with one line."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    if size > limit:
        raise InputError(f"input file {path} is {size} bytes; the limit is {limit}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
