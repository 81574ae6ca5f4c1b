"""The run store: one folder per training run under ``SUITE_HOME`` (default ``./runs``).

A run folder holds ``run.json`` (status, task, data source, strategy), ``config.yaml``, ``meta.json``
(class names, vocabularies), ``events.jsonl``, ``history.csv``, ``metrics.json``, ``model.keras``, the model
card ``README.md`` and ``exports/``. Every file is written atomically (see :mod:`suite.atomic`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from suite import atomic
from suite.errors import RunError

STATUSES = ("created", "running", "completed", "diverged", "failed", "interrupted", "stopped")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def suite_home() -> Path:
    return Path(os.environ.get("SUITE_HOME", "runs")).expanduser()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise RunError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (at most 100)")
    return name


class Run:
    """One run folder. Cheap to create: files are read when asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # ---- paths -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    # ---- content -----------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return atomic.read_json(self.path / "run.json", default={}) or {}

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = self.info
        info.update(changes)
        info["updated"] = now_iso()
        atomic.write_json(self.path / "run.json", info)
        return info

    @property
    def status(self) -> str:
        return self.info.get("status", "unknown")

    @property
    def task_name(self) -> str:
        return self.info.get("task", "")

    @property
    def config(self) -> dict[str, Any]:
        path = self.path / "config.yaml"
        if not path.exists():
            return {}
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    @property
    def meta(self) -> dict[str, Any]:
        return atomic.read_json(self.path / "meta.json", default={}) or {}

    @property
    def metrics(self) -> dict[str, Any]:
        return atomic.read_json(self.path / "metrics.json", default={}) or {}

    def history(self) -> list[dict[str, Any]]:
        """Per-epoch records from the event stream (the CSV beside it holds the same numbers)."""
        from suite.events import read_events

        return [e for e in read_events(self.events_path) if e.get("event") == "epoch_end"]

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def task(self):
        from suite.registry import get

        return get(self.task_name)

    def load_model(self):
        """Load ``model.keras`` with ``safe_mode=True``, after the plugin's ``keras_modules`` are imported."""
        if not self.has_model():
            raise RunError(f"run {self.name!r} has no model.keras (status: {self.status})")
        task = self.task()
        task.import_keras_objects()
        import keras

        try:
            return keras.saving.load_model(self.model_path, safe_mode=True, compile=False)
        except (TypeError, ValueError) as err:
            missing = unregistered_class(err)
            if missing is None:
                raise
            raise RunError(f"run {self.name!r}: its model uses the Keras class {missing!r}, which no module in "
                           f"the {task.name!r} plugin's keras_modules registers") from err

    def summary(self) -> dict[str, Any]:
        info = self.info
        metrics = self.metrics
        return {
            "name": self.name,
            "task": info.get("task", ""),
            "status": info.get("status", "unknown"),
            "data": info.get("data", ""),
            "created": info.get("created", ""),
            "epochs": info.get("epochs_done", 0),
            "strategy": (info.get("strategy") or {}).get("kind", ""),
            "metrics": {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))},
            # One warm input through the model, in ms (classifiers): with the model's size, what a run costs to serve.
            "serving_latency_ms_p50": metrics.get("serving_latency_ms_p50"),
            "path": str(self.path),
        }

    def __repr__(self) -> str:
        return f"<Run {self.name} {self.status}>"


class RunStore:
    """Lists, finds, creates, compares and deletes runs under one root folder."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else suite_home()

    def list(self, task: str | None = None) -> list[Run]:
        if not self.root.is_dir():
            return []
        runs = [Run(p) for p in self.root.iterdir() if p.is_dir() and (p / "run.json").is_file()]
        if task:
            runs = [r for r in runs if r.task_name == task]
        return sorted(runs, key=lambda r: (r.info.get("created", ""), r.name), reverse=True)

    def get(self, ref: str | os.PathLike | Run) -> Run:
        """A run by folder path or by name under the root; RunError if neither exists."""
        if isinstance(ref, Run):
            return ref
        path = Path(ref).expanduser()
        if (path / "run.json").is_file():
            return Run(path)
        candidate = self.root / str(ref)
        if (candidate / "run.json").is_file():
            return Run(candidate)
        raise RunError(f"no run named {str(ref)!r} in {self.root} (see `suite runs`)")

    def exists(self, name: str) -> bool:
        return (self.root / name / "run.json").is_file()

    def create(self, name: str, task: str, **info: Any) -> Run:
        check_name(name)
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        run = Run(path)
        atomic.write_json(
            path / "run.json", {"name": name, "task": task, "status": "created", "created": now_iso(), **info}
        )
        return run

    def unique_name(self, base: str) -> str:
        check_name(base)
        if not (self.root / base).exists():
            return base
        i = 2
        while (self.root / f"{base}-{i}").exists():
            i += 1
        return f"{base}-{i}"

    def delete(self, ref: str | os.PathLike | Run) -> Path:
        run = self.get(ref)
        # Rename first so a half-deleted folder never looks like a run.
        trash = run.path.with_name(f".deleting-{run.name}")
        os.replace(run.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return run.path

    def compare(self, refs: list[str]) -> list[dict[str, Any]]:
        rows = []
        for ref in refs:
            run = self.get(ref)
            row = run.summary()
            row["config"] = run.config
            rows.append(row)
        return rows


def unregistered_class(err: BaseException) -> str | None:
    """The class name in Keras' "Could not locate class 'X'" message, which Keras buries at the end of an
    outer "could not be deserialized" error after the whole model config; None for any other error."""
    import re

    match = re.search(r"Could not locate (?:class|function) '([^']+)'", str(err))
    return match.group(1) if match else None
