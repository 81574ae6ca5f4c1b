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


def reserve_ports(n: int) -> tuple[list[int], list[socket.socket]]:
    """``n`` distinct free ports on 127.0.0.1, still bound: the caller closes the sockets right before the
    workers start, so the window in which another program could take a port is a few milliseconds (TensorFlow's
    gRPC server will not share a port). A worker that loses the race anyway is retried (``PORT_TAKEN``)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    except OSError:
        for s in socks:
            s.close()
        raise
    return ports, socks


# What a worker prints when its port was taken between the pick and its server start: the launch is retried.
PORT_TAKEN = "Could not start gRPC server"
TRIES = 3


class _Tail:
    """Reads a worker's stderr as it comes (a worker that logs more than the pipe holds would otherwise block,
    and the chief wait on it forever), keeping the last lines for the failure message."""

    def __init__(self, stream, keep: int = 20):
        import collections
        import threading

        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())
        stream.close()

    def last(self) -> str | None:
        self.thread.join(timeout=5)
        return next((line for line in reversed(self.lines) if line.strip()), None)


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
    for attempt in range(1 if port else TRIES):
        ports, reserved = (list(range(port, port + workers)), []) if port else reserve_ports(workers)
        for s in reserved:
            s.close()
        code, failure = _run_workers(command, workers, ports, timeout)
        if not (failure and PORT_TAKEN in failure) or port or attempt == TRIES - 1:
            if failure:
                print(failure, file=sys.stderr)
            return code
        print("launch: a port was taken before its worker started; retrying with new ports", file=sys.stderr)
    return code


def _run_workers(command: list[str], workers: int, ports: list[int], timeout: float | None) -> tuple[int, str]:
    """Run the workers to the end; returns the exit code and the failing worker's message (or "")."""
    if command[0] == "train" and "--strategy" not in command:
        command = [*command, "--strategy", "multi_worker"]
    procs, tails = [], {}
    script = os.environ.get("SUITE_LAUNCH_SCRIPT")  # tests run a stand-in worker program
    program = [sys.executable, script] if script else [sys.executable, "-m", "suite.cli"]
    for i, cfg in enumerate(tf_configs(workers, ports)):
        env = dict(os.environ, TF_CONFIG=json.dumps(cfg))
        out = None if i == 0 else subprocess.DEVNULL
        procs.append(subprocess.Popen([*program, *command], env=env, stdout=out,
                                      stderr=None if i == 0 else subprocess.PIPE))
        if i:
            tails[i] = _Tail(procs[-1].stderr)
    deadline = time.monotonic() + timeout if timeout else None
    codes: dict[int, int] = {}
    try:
        while len(codes) < workers:
            for i, p in enumerate(procs):
                if i not in codes and p.poll() is not None:
                    codes[i] = p.returncode
                    if p.returncode != 0:
                        failure = f"worker {i} failed: {tails[i].last() or p.returncode}" if i in tails else ""
                        _stop(procs, codes)
                        return codes.get(0, p.returncode) or p.returncode, failure
            if deadline and time.monotonic() > deadline:
                _stop(procs, codes)
                return 124, f"launch: timed out after {timeout:.0f}s"
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs, codes)
        return 130, ""
    return codes[0], ""


def _stop(procs, codes) -> None:
    for i, p in enumerate(procs):
        if i not in codes and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
