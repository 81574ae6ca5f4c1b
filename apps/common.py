"""Helpers every page shares: the registry, the run store, cached predictors and error isolation."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import streamlit as st

from suite.errors import RunError, SuiteError, one_line
from suite.runstore import Run, RunStore

SAMPLE_PREFIX = "sample-"
ACTIVE = ("created", "running")


def registry():
    from suite.registry import get_registry

    return get_registry()


def store() -> RunStore:
    # Absolute, so training subprocesses started from here write to the same folder.
    return RunStore(RunStore().root.resolve())


def is_sample(run: Run) -> bool:
    return run.name.startswith(SAMPLE_PREFIX)


def run_label(run: Run) -> str:
    """``name · sample model · accuracy 0.93`` for select boxes."""
    bits = [run.name]
    if is_sample(run):
        bits.append("sample model")
    try:
        test = run.metrics.get("test") or {}
    except Exception:
        test = {}
    for key in ("accuracy", "bleu"):
        if isinstance(test.get(key), (int, float)):
            bits.append(f"{key} {test[key]:.3f}")
            break
    if run.status != "completed":
        bits.append(f"{run.status} · best checkpoint")
    return " · ".join(bits)


# A run cut short keeps its best checkpoint as model.keras (suite/trainer.py), so it can be used as well.
USABLE_STATUSES = ("completed", "stopped", "interrupted", "failed")


def usable_runs(task_name: str) -> list[Run]:
    """Runs of ``task_name`` that have a model (finished, or cut short with a best checkpoint), newest first;
    a run training on (resumed) is left out until it ends again."""
    out = []
    for run in store().list(task=task_name):
        with contextlib.suppress(Exception):
            if run.status in USABLE_STATUSES and run.has_model():
                out.append(run)
    return out


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    # A zombie child still answers kill(0); treat it as dead.
    with contextlib.suppress(Exception), open(f"/proc/{int(pid)}/stat", encoding="utf-8") as fh:
        if fh.read().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def is_running(run: Run) -> bool:
    """The run's trainer is alive (status says running and its process exists)."""
    info = run.info
    return info.get("status") in ACTIVE and pid_alive(info.get("pid"))


# ---- serving --------------------------------------------------------------------------------------
MODEL_LOADS = 0  # Predictors created in this server process (each model should load once, whatever the sessions)
# st.cache_resource loads each model once, but different models load in different sessions' threads at the same
# time, and Keras deserialisation is not thread-safe: measured on a quiet machine, the translation sample model
# failed with "25 objects could not be loaded" while other pages loaded theirs. Loads (and their warm-up
# traces) take turns; predictions on loaded models do not wait for this lock.
_LOAD_LOCK = threading.Lock()


@st.cache_resource(max_entries=16, show_spinner="Loading the model…")
def _load_predictor(run_path: str, stamp: float):
    """One Predictor per model file version: loaded once with safe_mode=True, warmed up, shared by sessions."""
    with _LOAD_LOCK:
        return _load_and_warm(run_path)


def _load_and_warm(run_path: str):
    global MODEL_LOADS
    from suite.predictor import Predictor

    started = time.time()
    predictor = Predictor(Run(run_path))
    MODEL_LOADS += 1
    # One line per load, so a benchmark (bench/app.py) can count and time loads from the server's log.
    print(f"suite-app: model loaded ({MODEL_LOADS}) {run_path} at {time.time():.3f} in {time.time() - started:.2f} s",
          file=sys.stderr, flush=True)
    # Trace the compiled calls now, so the user's first prediction is fast.
    with contextlib.suppress(Exception):
        for raw in predictor.task.warmup_inputs(predictor.meta):
            predictor.predict([raw])
    return predictor


def get_predictor(run: Run):
    """The cached Predictor of ``run``; a clear RunError when its folder or model is gone."""
    try:
        stamp = run.model_path.stat().st_mtime
    except FileNotFoundError:
        if not run.path.exists():
            raise RunError(f"run {run.name!r} is gone: its folder {run.path} was deleted") from None
        raise RunError(f"run {run.name!r} has no model.keras (status: {run.status})") from None
    return _load_predictor(str(run.path.resolve()), stamp)


def timed_predict(predictor, raw: Any, top_k: int = 5) -> tuple[dict, float]:
    """A prediction and the server-side milliseconds it took (decode, forward, post-processing)."""
    t0 = time.perf_counter()
    result = predictor.predict_one(raw, top_k=top_k)
    return result, (time.perf_counter() - t0) * 1000.0


# ---- error isolation ------------------------------------------------------------------------------
def show_error(err: BaseException, where: str = "") -> None:
    """One line for our own errors; the type, line and a collapsed traceback for anything else."""
    prefix = f"{where}: " if where else ""
    if isinstance(err, SuiteError):
        st.error(prefix + one_line(err))
        return
    st.error(f"{prefix}{one_line(err)}")
    with st.expander("Details"):
        st.code("".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:])


@contextlib.contextmanager
def guard(where: str = ""):
    """Run a block; an exception becomes an error message here and the rest of the page still renders.

    Streamlit's own control flow (rerun, stop, switch page) derives from BaseException and passes through.
    """
    try:
        yield
    except Exception as err:
        show_error(err, where)


# Fields of a form go in a wrapping row of fixed-width widgets rather than st.columns: as many per line as the
# screen holds (four on a laptop, two beside the sidebar on a narrow one, one on a phone), where fixed columns
# squeezed labels and values to a few characters each on narrow screens.
FIELD_WIDTH = 180


def field_row(key: str):
    return st.container(horizontal=True, wrap=True, gap="medium", vertical_alignment="bottom", key=key)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def path_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
