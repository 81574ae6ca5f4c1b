"""The plugin registry: tasks come in through the ``suite.plugins`` entry-point group.

Each entry point names a callable that is handed a ``register`` function (the simonw/llm way) and calls it
with one or more :class:`~suite.task.Task` instances. Built-in plugins are registered through the same group in
the project's own ``pyproject.toml``. A plugin that fails to import, raises while registering, reuses a name
or lacks a required part is recorded as a failure; every other plugin still loads.

Environment:
``SUITE_PLUGINS=a,b``   load only these entry points (by entry-point name)
``SUITE_AUTOLOAD=0``    load no entry points at all (tests register what they need)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import threading
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from suite.errors import PluginError
from suite.task import Task

ENTRY_POINT_GROUP = "suite.plugins"


@dataclasses.dataclass
class PluginFailure:
    name: str  # entry-point or task name
    source: str  # the entry point's value, or "register()"
    reason: str  # one line

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Registry:
    """Tasks by name, plus the plugins that failed to load and why."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._sources: dict[str, str] = {}
        self.failures: list[PluginFailure] = []

    # ---- registering -------------------------------------------------------------------------
    def register(self, task: Task | type[Task], *, source: str = "register()") -> Task | None:
        """Add one task. Problems are recorded as failures, never raised, so one bad plugin stays alone."""
        if isinstance(task, type) and issubclass(task, Task):
            try:
                task = task()
            except Exception as err:
                self._fail(getattr(task, "name", "") or task.__name__, source, f"could not be instantiated: {err}")
                return None
        if not isinstance(task, Task):
            self._fail(repr(task)[:60], source, "registered object is not a suite.task.Task")
            return None
        missing = type(task).missing_parts()
        label = task.name or type(task).__name__
        if missing:
            self._fail(label, source, f"missing required part(s): {', '.join(missing)}")
            return None
        unfound = _unfound_modules(task.keras_modules)
        if unfound:
            self._fail(label, source, f"keras_modules names module(s) that cannot be found: {', '.join(unfound)}")
            return None
        if task.name in self._tasks:
            self._fail(
                task.name, source, f"task name {task.name!r} is already registered by {self._sources[task.name]}"
            )
            return None
        self._tasks[task.name] = task
        self._sources[task.name] = source
        return task

    def load_entry_point(self, ep: EntryPoint) -> None:
        """Import one entry point and hand it ``register``; record any failure."""
        source = f"{ep.name} = {ep.value}"
        try:
            hook = ep.load()
        except BaseException as err:  # SyntaxError, ImportError, SystemExit from a hostile import...
            if isinstance(err, KeyboardInterrupt):
                raise
            self._fail(ep.name, source, f"import failed: {type(err).__name__}: {_first_line(err)}")
            return
        if not callable(hook) and hasattr(hook, "register"):
            hook = hook.register
        if not callable(hook):
            self._fail(ep.name, source, "entry point is not a callable register(register) hook")
            return

        def _register(task):
            return self.register(task, source=source)

        try:
            hook(_register)
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):
                raise
            self._fail(ep.name, source, f"register hook raised {type(err).__name__}: {_first_line(err)}")

    def load_entry_points(self, allowed: Iterable[str] | None = None) -> None:
        allowed_set = set(allowed) if allowed is not None else None
        for ep in discover_entry_points():
            if allowed_set is not None and ep.name not in allowed_set:
                continue
            self.load_entry_point(ep)
        if allowed_set:
            found = {ep.name for ep in discover_entry_points()}
            for name in sorted(allowed_set - found):
                self._fail(name, "SUITE_PLUGINS", "no installed plugin has this entry-point name")

    def _fail(self, name: str, source: str, reason: str) -> None:
        self.failures.append(PluginFailure(name=name, source=source, reason=reason))

    # ---- lookup ----------------------------------------------------------------------------------
    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            failed = [f for f in self.failures if f.name == name]
            if failed:
                raise PluginError(f"plugin {name!r} failed to load: {failed[0].reason}") from None
            close = difflib.get_close_matches(name, list(self._tasks), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._tasks)) or "none"
            raise PluginError(f"unknown task {name!r}{hint} (installed: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def tasks(self) -> list[Task]:
        return [self._tasks[n] for n in self.names()]

    def import_keras_objects(self) -> None:
        """Register every plugin's serializable Keras objects (before loading a model of unknown task)."""
        for task in self.tasks():
            task.import_keras_objects()

    def source(self, name: str) -> str:
        return self._sources.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def _unfound_modules(names) -> list[str]:
    """Module names that the import system cannot find, checked without importing them."""
    if isinstance(names, str):
        return [f"{names!r} (keras_modules must be a tuple of module names)"]
    unfound = []
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                unfound.append(name)
        except (ImportError, ValueError):
            unfound.append(name)
    return unfound


def discover_entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def allowed_from_env() -> list[str] | None:
    raw = os.environ.get("SUITE_PLUGINS", "").strip()
    if not raw:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


_default: Registry | None = None
_lock = threading.Lock()


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loaded from entry points on first use (unless SUITE_AUTOLOAD=0)."""
    global _default
    with _lock:
        if _default is None or reload:
            reg = Registry()
            if os.environ.get("SUITE_AUTOLOAD", "1") != "0":
                reg.load_entry_points(allowed_from_env())
            _default = reg
        return _default


def get(name: str) -> Task:
    return get_registry().get(name)


def set_registry(reg: Registry | None) -> None:
    """Replace the process-wide registry (tests)."""
    global _default
    with _lock:
        _default = reg
