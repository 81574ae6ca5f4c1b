"""First contact: small "sample models" trained on each plugin's built-in sample when the app first starts.

One background process trains them one after another (not in parallel, so a 2-core machine stays usable),
each as a run named ``sample-<task>`` with the plugin's ``sample_overrides``. Set
``SUITE_APP_PREPARE_SAMPLES=0`` to turn it off (tests do).

Run as ``python -m apps.samples TASK...`` it is that background process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from apps.common import SAMPLE_PREFIX, pid_alive
from suite import atomic
from suite.runstore import RunStore

LOCK_NAME = ".sample-models.lock"
STATUS_NAME = ".sample-models.json"
LOG_NAME = ".sample-models.log"


def enabled() -> bool:
    return os.environ.get("SUITE_APP_PREPARE_SAMPLES", "1") != "0"


def sample_name(task_name: str) -> str:
    return f"{SAMPLE_PREFIX}{task_name}"


def tasks_needing_samples(registry, store: RunStore) -> list[str]:
    """Tasks with no completed run that has a model (nothing to predict with yet)."""
    need = []
    for task in registry.tasks():
        runs = store.list(task=task.name)
        if not any(r.status == "completed" and r.has_model() for r in runs):
            need.append(task.name)
    return need


def status(store: RunStore) -> dict:
    """``{"pid": .., "alive": bool, "tasks": {task: state}}`` of the sample-model process, if any."""
    data = atomic.read_json(store.root / STATUS_NAME, default={}) or {}
    data["alive"] = pid_alive(data.get("pid"))
    return data


def start_background(tasks: list[str], store: RunStore) -> subprocess.Popen | None:
    """Start ONE process that trains ``tasks``' sample models in turn; None if one is already at work."""
    if not tasks:
        return None
    store.root.mkdir(parents=True, exist_ok=True)
    lock = store.root / LOCK_NAME
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            holder = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            holder = 0
        if pid_alive(holder):
            return None
        lock.unlink(missing_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return None
    env = dict(os.environ, SUITE_HOME=str(store.root.resolve()), PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(store.root / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apps.samples", *tasks], stdout=log, stderr=subprocess.STDOUT,
            # Same process group as the server: Ctrl-C on `make app` stops it too (the runs resume next time).
            stdin=subprocess.DEVNULL, env=env, close_fds=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    os.write(fd, str(proc.pid).encode())
    os.close(fd)
    atomic.write_json(store.root / STATUS_NAME, {"pid": proc.pid, "tasks": dict.fromkeys(tasks, "waiting")})
    return proc


def prepare_samples(tasks: list[str], store: RunStore, extra_overrides: dict | None = None) -> dict[str, str]:
    """Train each task's sample model in this process, in turn; one failure does not stop the others."""
    from suite.errors import one_line
    from suite.registry import get_registry
    from suite.trainer import train

    reg = get_registry()
    path = store.root / STATUS_NAME
    state = atomic.read_json(path, default={}) or {}
    state.setdefault("pid", os.getpid())
    states = state.setdefault("tasks", {})
    for name in tasks:
        states[name] = "training"
        atomic.write_json(path, state)
        try:
            task = reg.get(name)
            overrides = {**task.sample_overrides, **(extra_overrides or {})}
            run = train(task, "sample", overrides, name=sample_name(name), store=store)
            states[name] = run.status
        except Exception as err:  # noqa: BLE001 - one bad plugin must not stop the others
            states[name] = f"failed: {one_line(err)}"
        atomic.write_json(path, state)
    return states


def main(argv: list[str]) -> int:
    store = RunStore(os.environ.get("SUITE_HOME") or None)
    try:
        prepare_samples(argv, store)
    finally:
        with contextlib.suppress(OSError):
            lock = store.root / LOCK_NAME
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
