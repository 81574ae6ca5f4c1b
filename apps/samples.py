"""First contact: small "sample models" trained on each plugin's built-in sample when the app first starts.

A newcomer should see a working prediction on every plugin page within two minutes of ``make app``. So the
first session starts ONE background coordinator (``python -m suite_app.samples``) before the server has even
imported TensorFlow. It plans the work into lanes (default: one per CPU core, at most 4), cheapest models
first so the first pages become usable early, trains lane 0 itself and one child process per other lane.
Each model is a run named ``sample-<task>`` trained with the plugin's ``sample_overrides``; a page can
predict as soon as its own model is done. Progress (state, start/finish times, an estimate of when each
model is ready) goes to ``.sample-models.json`` in the run store. ``SUITE_APP_PREPARE_SAMPLES=0`` turns it off
(tests do); ``SUITE_APP_SAMPLE_LANES=N`` sets the lanes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from suite import atomic
from suite.runstore import RunStore
from suite_app.common import SAMPLE_PREFIX, pid_alive

LOCK_NAME = ".sample-models.lock"
STATUS_NAME = ".sample-models.json"
LOG_NAME = ".sample-models.log"
ACTIVE_STATES = ("planning", "waiting", "training")
# A task's own `sample_seconds` (one quiet 2-core machine) balances the lanes and gives the first "ready in ~N s";
# the estimate then follows the epochs done and how much slower than that the finished models were.
DEFAULT_SECONDS = 30.0


def enabled() -> bool:
    return os.environ.get("SUITE_APP_PREPARE_SAMPLES", "1") != "0"


def sample_name(task_name: str) -> str:
    return f"{SAMPLE_PREFIX}{task_name}"


def lanes_wanted(n_tasks: int) -> int:
    try:
        lanes = int(os.environ.get("SUITE_APP_SAMPLE_LANES", "0"))
    except ValueError:
        lanes = 0
    if lanes < 1:
        lanes = min(4, os.cpu_count() or 1)
    return max(1, min(lanes, n_tasks))


def tasks_needing_samples(registry, store: RunStore) -> list[str]:
    """Tasks with no completed run that has a model (nothing to predict with yet)."""
    need = []
    for task in registry.tasks():
        runs = store.list(task=task.name)
        if not any(r.status == "completed" and r.has_model() for r in runs):
            need.append(task.name)
    return need


def plan_lanes(tasks: list[str], lanes: int) -> list[list[str]]:
    """Balance the expected seconds over ``lanes`` (longest first), then run each lane cheapest first."""
    lanes = max(1, min(lanes, len(tasks))) if tasks else 0
    out: list[list[str]] = [[] for _ in range(lanes)]
    load = [0.0] * lanes
    for name in sorted(tasks, key=lambda t: -_typical(t)):
        i = min(range(lanes), key=lambda k: load[k])
        out[i].append(name)
        load[i] += _typical(name)
    return [sorted(lane, key=lambda t: _typical(t)) for lane in out]


# ---- the status file, shared by the lanes ------------------------------------------------------------
def status(store: RunStore) -> dict:
    """``{"pid", "alive", "tasks": {task: state}, "plan": {task: {lane, order}}, "times": {...}}``."""
    data = atomic.read_json(store.root / STATUS_NAME, default={}) or {}
    data["alive"] = pid_alive(data.get("pid"))
    return data


@contextlib.contextmanager
def _locked_state(store: RunStore):
    """Read-modify-write the status file under an advisory lock (several lane processes update it)."""
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / (STATUS_NAME + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            state = atomic.read_json(store.root / STATUS_NAME, default={}) or {}
            yield state
            atomic.write_json(store.root / STATUS_NAME, state)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _set_task(store: RunStore, name: str, value: str, **times) -> None:
    with _locked_state(store) as state:
        state.setdefault("tasks", {})[name] = value
        rec = state.setdefault("times", {}).setdefault(name, {})
        rec.update(times)


def eta_seconds(state: dict, task: str, store: RunStore, now: float | None = None) -> float | None:
    """About how many seconds until ``task``'s sample model is ready; None when it is not being prepared."""
    tasks = state.get("tasks") or {}
    if not state.get("alive"):
        return None
    if task not in tasks:
        return None if state.get("planned") else _typical(task)  # not planned, or still planning
    if tasks[task] not in ACTIVE_STATES:
        return None
    now = now or time.time()
    plan = state.get("plan") or {}
    lane = (plan.get(task) or {}).get("lane")
    order = (plan.get(task) or {}).get("order", 0)
    ahead = sorted((p.get("order", 0), t) for t, p in plan.items() if p.get("lane") == lane and t != task
                   and p.get("order", 0) < order)
    total = sum(_remaining(state, t, store, now) for _, t in ahead)
    return total + _remaining(state, task, store, now)


def _typical(task: str) -> float:
    """The task's declared ``sample_seconds``, or a middling default for a task that declares none."""
    from suite.registry import get_registry

    try:
        seconds = float(getattr(get_registry().get(task), "sample_seconds", 0) or 0)
    except Exception:  # noqa: BLE001 - an unknown or broken plugin gets the default
        seconds = 0.0
    return seconds or DEFAULT_SECONDS


def _remaining(state: dict, task: str, store: RunStore, now: float) -> float:
    """Seconds left for one task: its typical time if not started, else from its progress so far."""
    current = (state.get("tasks") or {}).get(task)
    if current not in ACTIVE_STATES:
        return 0.0
    started = ((state.get("times") or {}).get(task) or {}).get("started")
    typical = _typical(task) * _slowdown(state)
    if current != "training" or not started:
        return typical
    elapsed = max(0.0, now - float(started))
    from suite_app.training import progress

    fraction = progress(store.root / sample_name(task))["fraction"]
    if fraction >= 0.2:
        # Epochs after the first are faster (tracing is done): extrapolate, plus a little for the test split.
        return max(1.0, elapsed * (1 - fraction) / fraction * 0.8 + 0.1 * typical)
    return max(2.0, typical - elapsed)


def _slowdown(state: dict) -> float:
    """How much slower than typical the finished sample models were here (a busy machine)."""
    ratios = []
    for task, rec in (state.get("times") or {}).items():
        if rec.get("started") and rec.get("finished"):
            ratios.append((rec["finished"] - rec["started"]) / _typical(task))
    return min(4.0, max(0.5, sum(ratios) / len(ratios))) if ratios else 1.0


def describe(state: dict, task: str, store: RunStore) -> str | None:
    """One line for a page: what happens to ``task``'s sample model now, or None when nothing does."""
    tasks = state.get("tasks") or {}
    current = tasks.get(task)
    if current and current.startswith("failed"):
        return f"the sample model could not be trained: {current[len('failed: '):]}"
    if not state.get("alive"):
        return None
    eta = eta_seconds(state, task, store)
    if eta is None:
        return None
    ready = f"ready in ~{max(1, round(eta))} s"
    if current == "training":
        prog = _progress(store, task)
        epoch = f" (epoch {prog['epoch']}/{prog['epochs']})" if prog["epochs"] and prog["epoch"] else ""
        return f"sample model being trained{epoch}, {ready}"
    return f"sample model being prepared, {ready}"


def _progress(store: RunStore, task: str) -> dict:
    from suite_app.training import progress

    return progress(store.root / sample_name(task))


# ---- starting the background work ---------------------------------------------------------------------
def start_background(tasks: list[str] | None, store: RunStore) -> subprocess.Popen | None:
    """Start ONE coordinator for ``tasks`` (None: it finds the tasks itself); None if one is already at work.

    With ``tasks=None`` the app can start it before importing TensorFlow and the plugins (seconds earlier).
    """
    if tasks is not None and not tasks:
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
    with _locked_state(store) as state:  # before the child starts, so it never overwrites the child's plan
        state.clear()
        state.update({"pid": None, "started": time.time(), "tasks": dict.fromkeys(tasks or [], "waiting"),
                      "plan": {}, "times": {}})
    env = dict(os.environ, SUITE_HOME=str(store.root.resolve()), PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = list(tasks) if tasks is not None else ["--auto"]
    with open(store.root / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suite_app.samples", *args], stdout=log, stderr=subprocess.STDOUT,
            # Same process group as the server: Ctrl-C on `make app` stops it too (the runs resume next time).
            stdin=subprocess.DEVNULL, env=env, close_fds=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    os.write(fd, str(proc.pid).encode())
    os.close(fd)
    with _locked_state(store) as state:
        state["pid"] = proc.pid
    return proc


def prepare_samples(tasks: list[str], store: RunStore, extra_overrides: dict | None = None) -> dict[str, str]:
    """Train each task's sample model in this process, in turn; one failure does not stop the others."""
    from suite.errors import one_line
    from suite.registry import get_registry
    from suite.trainer import TrainOptions, train

    reg = get_registry()
    states: dict[str, str] = {}
    for name in tasks:
        _set_task(store, name, "training", started=time.time())
        try:
            task = reg.get(name)
            overrides = {**task.sample_overrides, **(extra_overrides or {})}
            # No TensorBoard logs: they cost seconds on a first start and a sample model needs none.
            run = train(task, "sample", overrides, name=sample_name(name), store=store,
                        options=TrainOptions(tensorboard=False))
            states[name] = run.status
        except Exception as err:  # noqa: BLE001 - one bad plugin must not stop the others
            states[name] = f"failed: {one_line(err)}"
        _set_task(store, name, states[name], finished=time.time())
    return states


def coordinate(tasks: list[str] | None, store: RunStore) -> dict[str, str]:
    """Start a child per extra lane at once (each imports TensorFlow and the plugins meanwhile), plan the
    lanes, train lane 0 here, wait for the children."""
    lanes_n = lanes_wanted(len(tasks) if tasks is not None else 4)
    with _locked_state(store) as state:  # the children wait for a plan made by this run, not an old one
        state.pop("planned", None)
        state["plan"] = {}
        state["pid"] = os.getpid()
    env = dict(os.environ, SUITE_HOME=str(store.root.resolve()), PYTHONUNBUFFERED="1")
    children = [subprocess.Popen([sys.executable, "-m", "suite_app.samples", "--lane-index", str(i), str(os.getpid())],
                                 env=env, stdin=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parent.parent))
                for i in range(1, lanes_n)]
    try:
        if tasks is None:
            from suite.registry import get_registry

            tasks = tasks_needing_samples(get_registry(), store)
        lanes = plan_lanes(tasks, lanes_n)
        with _locked_state(store) as state:
            state["pid"] = os.getpid()
            state["plan"] = {t: {"lane": i, "order": j} for i, lane in enumerate(lanes) for j, t in enumerate(lane)}
            tasks_state = state.setdefault("tasks", {})
            for t in tasks:
                tasks_state.setdefault(t, "waiting")
            for t in list(tasks_state):
                if t not in tasks:
                    del tasks_state[t]
            state["planned"] = time.time()
        if lanes:
            prepare_samples(lanes[0], store)
    finally:
        for child in children:
            child.wait()
    return status(store).get("tasks") or {}


def run_lane(index: int, coordinator: int, store: RunStore, timeout: float = 600.0) -> dict[str, str]:
    """A lane child: get TensorFlow and the plugins ready, wait for the plan, train this lane's tasks."""
    from suite.registry import get_registry

    get_registry()
    deadline = time.time() + timeout
    while True:
        state = atomic.read_json(store.root / STATUS_NAME, default={}) or {}
        if state.get("planned"):
            break
        if time.time() > deadline or not pid_alive(coordinator):
            return {}
        time.sleep(0.2)
    plan = state.get("plan") or {}
    mine = sorted((p.get("order", 0), t) for t, p in plan.items() if p.get("lane") == index)
    return prepare_samples([t for _, t in mine], store)


def stop_with_parent(grace_s: float = 15.0, poll_s: float = 1.0) -> threading.Thread:
    """Background sample training ends when the process that started it (the server, or the coordinator)
    is gone: SIGTERM to itself (the trainer stops at the next batch; the run resumes next time), then exit."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(0)

    thread = threading.Thread(target=watch, name="stop-with-parent", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    stop_with_parent()
    store = RunStore(os.environ.get("SUITE_HOME") or None)
    if argv[:1] == ["--lane-index"]:
        run_lane(int(argv[1]), int(argv[2]), store)
        return 0
    try:
        coordinate(None if argv[:1] == ["--auto"] else argv, store)
    finally:
        with contextlib.suppress(OSError):
            lock = store.root / LOCK_NAME
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
