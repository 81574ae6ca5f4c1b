"""`suite launch`: worker output drained while they run, ports held until the workers have them."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest

from suite.launch import reserve_ports

LOUD_WORKER = """
import json, os, sys, time
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if index == 1:
    for _ in range(2048):  # 2 MB: far more than a pipe buffer holds
        sys.stderr.write("x" * 1023 + "\\n")
    sys.stderr.flush()
    sys.exit(int(os.environ.get("LOUD_EXIT", "0")))
time.sleep(1)
"""


def _launch(tmp_path, extra_env=None):
    script = tmp_path / "worker.py"
    script.write_text(LOUD_WORKER)
    env = dict(os.environ, SUITE_LAUNCH_SCRIPT=str(script), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "suite.cli", "launch", "--workers", "2", "--timeout", "60", "--",
                           "noop"], capture_output=True, text=True, env=env, timeout=120)


def test_a_worker_writing_megabytes_to_stderr_does_not_block_the_launch(tmp_path):
    proc = _launch(tmp_path)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_a_failing_worker_is_reported_with_its_last_line(tmp_path):
    proc = _launch(tmp_path, {"LOUD_EXIT": "3"})
    assert proc.returncode != 0
    assert "worker 1 failed: " + "x" * 20 in proc.stderr


def test_reserved_ports_are_distinct_and_held_until_released():
    ports, socks = reserve_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        other = socket.socket()
        with pytest.raises(OSError) as err:
            other.bind(("127.0.0.1", port))
        other.close()
        assert err.value.errno == errno.EADDRINUSE
    for s in socks:
        s.close()


RACED_WORKER = """
import json, os, sys, time
flag = os.environ["RACE_FLAG"]
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
if index == 0:
    time.sleep(1)
elif not os.path.exists(flag):  # the first launch loses the port race, as a taken port makes gRPC fail
    open(flag, "w").close()
    sys.stderr.write("error: unexpected UnknownError: Could not start gRPC server\\n")
    sys.exit(1)
"""


def test_a_worker_that_lost_its_port_is_retried_with_new_ports(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(RACED_WORKER)
    env = dict(os.environ, SUITE_LAUNCH_SCRIPT=str(script), RACE_FLAG=str(tmp_path / "raced"))
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "launch", "--workers", "2", "--timeout", "60", "--",
                           "noop"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "retrying with new ports" in proc.stderr
