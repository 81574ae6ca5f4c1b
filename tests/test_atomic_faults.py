"""Faults while saving: a process SIGKILLed mid-write, or a full disk (simulated with ``RLIMIT_FSIZE``), leaves
the last good file loadable under its name, the temporary file removed or ignored, and a clear error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from suite import atomic
from suite.runstore import RunStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses POSIX signals and RLIMIT_FSIZE")


def _python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_during_a_large_atomic_write_keeps_the_old_file(tmp_path):
    final = tmp_path / "model.keras"
    atomic.write_bytes(final, b"GOOD" * 1000)
    # The child writes 1 MiB chunks into atomic_path's temp file slowly; we kill it once it is mid-way.
    proc = _python(f"""
        import sys, time
        from suite import atomic
        with atomic.atomic_path({str(final)!r}) as tmp:
            with open(tmp, "wb") as fh:
                for i in range(200):
                    fh.write(b"N" * (1 << 20)); fh.flush()
                    if i == 3:
                        print("writing", flush=True)
                    time.sleep(0.05)
    """)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert final.read_bytes() == b"GOOD" * 1000  # the last good state, whole
    leftovers = [p for p in tmp_path.iterdir() if p != final]
    # A SIGKILL cannot clean up: the half-written temp file may stay, but hidden and never under the final name.
    assert all(p.name.startswith(".model.keras.") and ".tmp" in p.name for p in leftovers), leftovers


def test_sigkill_at_random_moments_never_corrupts_run_json(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create("r1", "tabular_classification")
    for delay in (0.05, 0.13, 0.21, 0.37):
        proc = _python(f"""
            from suite.runstore import RunStore
            run = RunStore({str(store.root)!r}).get("r1")
            i = 0
            while True:
                i += 1
                run.update_info(status="running", epochs_done=i, padding="x" * 200000)
                if i == 1:
                    print("ready", flush=True)
        """)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        info = json.loads(run.file("run.json").read_text())  # always whole JSON
        assert info["name"] == "r1" and info["task"] == "tabular_classification"
        assert info["epochs_done"] >= 1
    assert [r.name for r in store.list()] == ["r1"]  # leftover temp files do not look like runs


def _fsize_child(code: str, limit: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        try:
{textwrap.indent(textwrap.dedent(code), " " * 12)}
            print(json.dumps({{"raised": None}}))
        except BaseException as err:
            from suite.errors import SuiteError, one_line
            print(json.dumps({{"raised": type(err).__name__, "oserror": isinstance(err, OSError),
                               "errno": getattr(err, "errno", None), "suite": isinstance(err, SuiteError),
                               "line": one_line(err)}}))
    """)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_full_disk_during_write_bytes_keeps_the_old_file_and_says_so(tmp_path):
    final = tmp_path / "metrics.json"
    atomic.write_json(final, {"accuracy": 0.9})
    result = _fsize_child(f"""
            from suite import atomic
            atomic.write_bytes({str(final)!r}, b"x" * (4 << 20))
    """, limit=1 << 20)
    assert result["raised"] == "DiskFullError" and result["suite"] and result["oserror"], result
    assert result["errno"] == 27  # EFBIG, what RLIMIT_FSIZE gives; ENOSPC is handled the same way
    assert result["line"].startswith(f"disk full while writing {final}") and "previous version is kept" in \
        result["line"], result
    assert atomic.read_json(final) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # the temp file was removed


def test_full_disk_during_a_keras_save_keeps_the_last_good_model(tmp_path):
    final = tmp_path / "model.keras"
    result = _fsize_child(f"""
            import keras, numpy as np
            from suite import atomic
            def model(units):
                inp = keras.Input((8,))
                return keras.Model(inp, keras.layers.Dense(units)(inp))
            good = model(2)
            with atomic.atomic_path({str(final)!r}, suffix=".keras") as tmp:
                good.save(tmp)
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the disk fills up now
            try:
                with atomic.atomic_path({str(final)!r}, suffix=".keras") as tmp:
                    model(20000).save(tmp)  # ~640 KB of weights
            finally:
                back = keras.saving.load_model({str(final)!r}, safe_mode=True)
                x = np.ones((1, 8), "float32")
                assert np.allclose(back(x), good(x)), "reloaded model differs from the last good one"
    """, limit=1 << 30)
    assert result["raised"] == "DiskFullError", result
    assert "disk full while writing" in result["line"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


# ---- end to end: a real training run meets a full disk, then the same command resumes it ------------------
_FILL_DISK = """
import os, resource, sys
from pathlib import Path

from suite import events

FAIL_AT_EPOCH = int(os.environ["FILL_DISK_AT_EPOCH"])
_emit = events.EventWriter.emit


def emit(self, event, **fields):
    record = _emit(self, event, **fields)
    if event == "epoch_start" and fields.get("epoch") == FAIL_AT_EPOCH and self.path:
        # The disk fills up now: no file may grow past the largest one written so far plus some room, so the
        # small files (events, run.json) still fit and the next checkpoint save fails part way.
        folder = Path(self.path).parent
        biggest = max(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".h5"))
        limit = biggest + (64 << 10)
        Path(os.environ["FILL_DISK_LIMIT_FILE"]).write_text(str(limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return record


events.EventWriter.emit = emit
from suite.cli import main

main(sys.argv[1:])
"""


def test_full_disk_mid_training_stops_clearly_and_the_same_command_resumes(tmp_path):
    """A real run (tiny sample config): the disk fills up at epoch 3, the backup save fails part way; the run
    stops with one clear line, the epoch-2 backup still loads, and rerunning the same command resumes there."""
    import h5py

    home = tmp_path / "runs"
    limit_file = tmp_path / "limit"
    args = ["train", "tabular_classification", "--data", "sample", "--name", "full-disk", "--set", "epochs=5",
            "--set", "hidden_units=256", "--strategy", "auto", "--precision", "float32"]
    env = dict(os.environ, SUITE_HOME=str(home), SUITE_PLUGINS="tabular_classification",
               FILL_DISK_AT_EPOCH="3", FILL_DISK_LIMIT_FILE=str(limit_file))
    first = subprocess.run([sys.executable, "-c", _FILL_DISK, *args], capture_output=True, text=True, env=env,
                           timeout=180)
    run_dir = home / "full-disk"
    info = json.loads((run_dir / "run.json").read_text())
    # Stopped with ONE clear line (the CLI's `error: ...`), recorded in run.json too.
    assert first.returncode != 0, first.stdout[-2000:]
    lines = [ln for ln in first.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, first.stderr[-3000:]
    assert re.fullmatch(r"error: disk full while writing \S+/backup/latest\.weights\.h5 \(File too large\); the "
                        r"previous version is kept", lines[0]), lines[0]
    assert "Traceback" not in first.stderr
    assert info["status"] == "failed" and "disk full" in info["error"]
    # The save really failed part way: the checkpoint is bigger than what the "disk" allowed.
    limit = int(limit_file.read_text())
    backup = run_dir / "backup" / "latest.weights.h5"
    assert backup.stat().st_size > limit
    # The last good state is whole: epoch 2's backup opens and holds weights, no temp file is left beside it.
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    with h5py.File(backup, "r") as fh:
        assert len(fh.keys()) > 0
    assert [p.name for p in (run_dir / "backup").iterdir() if ".tmp" in p.name] == []
    ends = [e["epoch"] for e in _events(run_dir) if e["event"] == "epoch_end"]
    assert ends == [1, 2]  # epoch 3 trained, but its backup save failed before it was reported done

    # The same command, on a disk with room again: it resumes after epoch 2 and completes.
    env.pop("FILL_DISK_AT_EPOCH")
    again = subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, env=env,
                           timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    events_ = _events(run_dir)
    starts = [i for i, e in enumerate(events_) if e["event"] == "run_start"]
    assert len(starts) == 2 and events_[starts[1]].get("resumed") is True
    resumed_epochs = [e["epoch"] for e in events_[starts[1]:] if e["event"] == "epoch_end"]
    assert resumed_epochs == [3, 4, 5], resumed_epochs  # from the last finished backup, nothing repeated before it
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["epochs_done"] == 5
    from suite.runstore import Run

    model = Run(run_dir).load_model()  # keras.saving.load_model(..., safe_mode=True, compile=False)
    assert model.count_params() > 256 * 256


def _events(run_dir):
    return [json.loads(ln) for ln in (run_dir / "events.jsonl").read_text().splitlines() if ln.strip()]
