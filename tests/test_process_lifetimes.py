"""Process lifetimes: `suite app` takes its server and helpers down with it; background sample training ends
when the process that started it is gone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_sigterm_to_suite_app_stops_the_server_and_frees_its_port(tmp_path):
    port = _free_port()
    env = dict(os.environ, SUITE_HOME=str(tmp_path / "runs"), SUITE_APP_PREPARE_SAMPLES="0")
    cli = subprocess.Popen([sys.executable, "-m", "suite.cli", "app", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: _listening(port), 90), "the server never listened"
        children = psutil.Process(cli.pid).children(recursive=True)
        assert children, "suite app should run the server as a child process"
        cli.send_signal(signal.SIGTERM)
        cli.wait(timeout=60)
        assert _wait(lambda: not _listening(port), 30), "the port is still served after suite app ended"
        assert _wait(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 30)
    finally:
        if cli.poll() is None:
            cli.kill()


_CHILD = """
import signal, sys, time
from suite_app.samples import stop_with_parent
signal.signal(signal.SIGTERM, lambda *a: (print("TERM", flush=True), sys.exit(0)))
stop_with_parent(grace_s=5, poll_s=0.1)
print("READY", flush=True)
time.sleep(120)
"""

_PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=open(sys.argv[2], "w"))
print(child.pid, flush=True)
child.wait()
"""


def test_background_training_stops_when_its_parent_dies(tmp_path):
    log = tmp_path / "child.log"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD, str(log)], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert _wait(lambda: log.exists() and "READY" in log.read_text(), 60)
    parent.kill()  # like a server killed with SIGKILL: it cannot pass anything on
    parent.wait(timeout=10)
    assert _wait(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 20)
    assert "TERM" in log.read_text()  # it was asked to stop (the trainer stops at the next batch), not killed
