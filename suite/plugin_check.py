"""``suite plugins --check``: import and register each plugin in its own subprocess, with a timeout.

A plugin that hangs on import, calls ``sys.exit()`` or crashes the interpreter is reported, not obeyed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from suite.registry import discover_entry_points

_PROBE = r"""
import json, sys
from importlib.metadata import entry_points
from suite.registry import Registry, ENTRY_POINT_GROUP
name = sys.argv[1]
reg = Registry()
for ep in entry_points(group=ENTRY_POINT_GROUP):
    if ep.name == name:
        reg.load_entry_point(ep)
print("SUITE-PROBE " + json.dumps({"tasks": reg.names(), "failures": [f.reason for f in reg.failures]}))
"""


def check_entry_point(name: str, timeout: float = 60.0) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"entry_point": name, "ok": False, "detail": f"timed out after {timeout:.0f}s while loading"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SUITE-PROBE ")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"entry_point": name, "ok": False, "detail": f"probe process ended early ({proc.returncode}): {tail}"}
    result = json.loads(line[len("SUITE-PROBE "):])
    if result["failures"]:
        return {"entry_point": name, "ok": False, "detail": "; ".join(result["failures"])}
    return {"entry_point": name, "ok": True, "detail": "registers " + ", ".join(result["tasks"])}


def check_all(timeout: float = 60.0) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    names = [ep.name for ep in discover_entry_points()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda n: check_entry_point(n, timeout), names))


if __name__ == "__main__":
    print(json.dumps(check_all(), indent=2))
