"""``suite plugins --check``: import and register each plugin in its own subprocess, with a timeout.

A plugin is code that runs on import. Plain ``suite plugins`` survives a plugin that raises (even
``SystemExit``), but a plugin that hangs, calls ``os._exit`` or crashes the interpreter would take the process
with it. The check runs each entry point in a child process (its own session, so a timeout kills whatever it
spawned too), with no stdin, output to capped files, at most ``jobs`` at a time, and reports, never obeys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from suite.registry import allowed_from_env, discover_entry_points

_MARK = "SUITE-PROBE "
_PROBE = r"""
import json, resource, sys
# Whatever the plugin writes (our captured output included) is capped; no core dumps.
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from suite.registry import Registry, discover_entry_points
name = sys.argv[1]
reg = Registry()
found = 0
for ep in discover_entry_points():
    if ep.name == name:
        found += 1
        reg.load_entry_point(ep)
sys.stdout.flush()
print("\nSUITE-PROBE " + json.dumps({"found": found, "tasks": reg.names(),
      "sources": {n: reg.source(n) for n in reg.names()}, "failures": [f.reason for f in reg.failures]}),
      flush=True)
"""
_MAX_OUTPUT = 1 << 20  # the tail of the probe's output that we read
_MAX_FILE = 64 << 20  # the most the probe may write to any file, its captured output included


def check_entry_point(name: str, timeout: float = 60.0) -> dict:
    """Probe one entry point by name in a fresh interpreter; return ``{entry_point, ok, detail, ...}``."""
    start = time.monotonic()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Output goes to files, not pipes: a chatty plugin cannot fill our memory, and a process it leaves
    # behind cannot keep a pipe open and block us.
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        proc = subprocess.Popen([sys.executable, "-c", _PROBE, name, str(_MAX_FILE)], stdin=subprocess.DEVNULL,
                                stdout=fout, stderr=ferr, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return _result(name, False, f"timed out after {timeout:g}s while loading (import hangs?)", start,
                           timed_out=True)
        out, err = _tail(fout), _tail(ferr)
    # The last marker line is ours: the plugin's own output comes before it.
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith(_MARK)), None)
    if line is None:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()]
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        detail = f"the plugin ended the process while loading ({how})" + (f": {tail[-1][:200]}" if tail else "")
        return _result(name, False, detail, start)
    try:
        result = json.loads(line[len(_MARK):])
    except ValueError:
        return _result(name, False, "probe output could not be read", start)
    if not result.get("found"):
        return _result(name, False, "no installed plugin has this entry-point name", start)
    if result["failures"]:
        return _result(name, False, "; ".join(result["failures"]), start, tasks=result["tasks"])
    if not result["tasks"]:
        return _result(name, False, "the register hook registered no task", start)
    return _result(name, True, "registers " + ", ".join(result["tasks"]), start, tasks=result["tasks"])


def _result(name: str, ok: bool, detail: str, start: float, *, tasks=(), timed_out=False) -> dict:
    return {"entry_point": name, "ok": ok, "detail": detail, "tasks": list(tasks), "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 2)}


def _tail(fh) -> str:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - _MAX_OUTPUT))
    return fh.read().decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the probe and anything it started (its own session), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(timeout=10)


def check_all(timeout: float = 60.0, jobs: int | None = None, names: list[str] | None = None) -> list[dict]:
    """Probe every installed entry point (or those SUITE_PLUGINS names), at most ``jobs`` at a time.

    Results come back in load order. Since each probe is alone, a task name two plugins both register is
    caught here afterwards: the later one fails, as it would in the real registry.
    """
    if names is None:
        allowed = allowed_from_env()
        found = [ep.name for ep in discover_entry_points()]
        names = list(dict.fromkeys(n for n in found if allowed is None or n in allowed))
        missing = [n for n in (allowed or []) if n not in found]
    else:
        missing = []
    jobs = max(1, min(jobs or min(4, os.cpu_count() or 1), len(names) or 1))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda n: check_entry_point(n, timeout), names))
    owner: dict[str, str] = {}
    for r in results:
        if not r["ok"]:
            continue
        clash = [t for t in r["tasks"] if t in owner]
        if clash:
            r["ok"] = False
            r["detail"] = "; ".join(f"task name {t!r} is already registered by {owner[t]}" for t in clash)
        for t in r["tasks"]:
            owner.setdefault(t, r["entry_point"])
    results += [{"entry_point": n, "ok": False, "detail": "no installed plugin has this entry-point name "
                 "(SUITE_PLUGINS)", "tasks": [], "timed_out": False, "seconds": 0.0} for n in missing]
    return results


if __name__ == "__main__":
    print(json.dumps(check_all(), indent=2))
