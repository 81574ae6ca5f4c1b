"""``suite launch --workers N -- train ...``: N local worker processes with TF_CONFIG on 127.0.0.1.

The same ``suite train`` command runs on a real cluster (Kubernetes, Slurm, Vertex AI) where the scheduler sets
``TF_CONFIG``; this launcher lets a user try it, and the tests exercise it, on one machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from suite.errors import SuiteError


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_configs(workers: int, ports: list[int]) -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(workers)]


def launch_local(command: list[str], *, workers: int, port: int = 0, timeout: float | None = None) -> int:
    """Start the workers, stream the chief's output, and return the chief's exit code.

    If any worker fails, the others are stopped: a multi-worker collective would otherwise wait forever.
    """
    if workers < 1:
        raise SuiteError("--workers must be at least 1")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SuiteError("give the suite command to run, e.g. `suite launch --workers 2 -- train TASK ...`")
    ports = list(range(port, port + workers)) if port else free_ports(workers)
    if command[0] == "train" and "--strategy" not in command:
        command = [*command, "--strategy", "multi_worker"]
    procs = []
    for i, cfg in enumerate(tf_configs(workers, ports)):
        env = dict(os.environ, TF_CONFIG=json.dumps(cfg))
        out = None if i == 0 else subprocess.DEVNULL
        procs.append(subprocess.Popen([sys.executable, os.environ.get("SUITE_LAUNCH_SCRIPT", "-m"), *([] if os.environ.get("SUITE_LAUNCH_SCRIPT") else ["suite.cli"]), *command], env=env, stdout=out,
                                      stderr=None if i == 0 else subprocess.PIPE))
    deadline = time.monotonic() + timeout if timeout else None
    codes: dict[int, int] = {}
    try:
        while len(codes) < workers:
            for i, p in enumerate(procs):
                if i not in codes and p.poll() is not None:
                    codes[i] = p.returncode
                    if p.returncode != 0:
                        if i != 0 and p.stderr is not None:
                            tail = p.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
                            print(f"worker {i} failed: {tail[0] if tail else p.returncode}", file=sys.stderr)
                        _stop(procs, codes)
                        return codes.get(0, p.returncode) or p.returncode
            if deadline and time.monotonic() > deadline:
                _stop(procs, codes)
                print(f"launch: timed out after {timeout:.0f}s", file=sys.stderr)
                return 124
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs, codes)
        return 130
    return codes[0]


def _stop(procs, codes) -> None:
    for i, p in enumerate(procs):
        if i not in codes and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
