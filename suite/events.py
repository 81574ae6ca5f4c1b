"""The run's event stream: JSON lines that the CLI progress bar, the app and tests all read.

Each line is one event: ``run_start``, ``epoch_start``, ``step`` (throttled), ``epoch_end``, ``run_end``,
``message``. Lines are appended and flushed whole, so a reader never sees half an event except possibly a
truncated last line after a crash, which readers skip.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Listener = Callable[[dict[str, Any]], None]


class EventWriter:
    def __init__(self, path: str | os.PathLike | None, listeners: list[Listener] | None = None):
        self.path = Path(path) if path else None
        self.listeners = list(listeners or [])
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=_default) + "\n"
        with self._lock:
            if self.path:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
        for listener in self.listeners:
            listener(record)
        return record


def _default(obj: Any) -> Any:
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


def read_events(path: str | os.PathLike, since: int = 0) -> list[dict[str, Any]]:
    """All complete events from line ``since`` on; a malformed (partly written) line is skipped."""
    return list(iter_events(path, since))


def iter_events(path: str | os.PathLike, since: int = 0) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i < since or not line.endswith("\n"):
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return
