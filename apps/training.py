"""Training from the app: each run is a separate `suite train` process, so the server stays responsive and a
crash in training cannot take it down. Also: safe extraction of uploaded zips, and progress from events.jsonl.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from suite.errors import DataSourceError, RunError
from suite.events import read_events
from suite.runstore import Run, RunStore, check_name
from suite_app import settings

LOG_NAME = "app-train.log"


def _child_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SUITE_HOME"] = str(Path(root).resolve())
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def set_args(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """``--set key=value`` for each value that differs from the config's default."""
    out: list[str] = []
    for key, value in values.items():
        if key in defaults and value == defaults[key]:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out += ["--set", f"{key}={value}"]
    return out


def launch(args: list[str], run_dir: Path, root: Path) -> subprocess.Popen:
    """Start ``python -m suite.cli ARGS`` in its own process group, logging to ``run_dir/app-train.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / LOG_NAME, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "suite.cli", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_child_env(root), start_new_session=True, close_fds=True,
        )
    finally:
        log.close()


def start_training(task: str, data: str, overrides: dict[str, Any], defaults: dict[str, Any], *, name: str,
                   strategy: str = "auto", precision: str = "auto", store: RunStore) -> tuple[Run, subprocess.Popen]:
    """Start a new run named ``name`` (made unique) as a background process."""
    check_name(name)
    name = store.unique_name(name)
    run_dir = store.root / name  # the trainer writes run.json; the folder only holds our log until then
    args = ["train", task, "--data", data, "--name", name, "--strategy", strategy, "--precision", precision,
            *set_args(overrides, defaults)]
    proc = launch(args, run_dir, store.root)
    return Run(run_dir), proc


def resume_training(run: Run, store: RunStore) -> subprocess.Popen:
    if not run.path.exists():
        raise RunError(f"run {run.name!r} is gone: its folder was deleted")
    if run.status in ("completed", "diverged"):
        raise RunError(f"run {run.name!r} is {run.status}; nothing to resume")
    return launch(["train", run.task_name, "--resume", str(run.path.resolve())], run.path, store.root)


def start_distillation(teacher: Run, student: str | None, *, store: RunStore) -> tuple[Run, subprocess.Popen]:
    """Start `suite distill TEACHER` as a background process; the student is a new run followed like any."""
    if not teacher.path.exists():
        raise RunError(f"run {teacher.name!r} is gone: its folder was deleted")
    name = store.unique_name(f"{teacher.name}-student" + (f"-{student}" if student else ""))
    check_name(name)
    run_dir = store.root / name
    args = ["distill", str(teacher.path.resolve()), "--name", name, *(["--student", student] if student else [])]
    return Run(run_dir), launch(args, run_dir, store.root)


def request_stop(run: Run) -> None:
    """Ask the trainer to stop after the current batch (it checks ``STOP`` each batch)."""
    if not run.path.exists():
        raise RunError(f"run {run.name!r} is gone: its folder was deleted")
    (run.path / "STOP").write_text("stop requested from the app\n", encoding="utf-8")


def log_tail(run_dir: Path, lines: int = 25) -> str:
    path = Path(run_dir) / LOG_NAME
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- progress -----------------------------------------------------------------------------------
def progress(run_dir: Path) -> dict[str, Any]:
    """Where a run is, from its event stream: fraction done, last step, per-epoch history, final status."""
    events = read_events(Path(run_dir) / "events.jsonl")
    out: dict[str, Any] = {"fraction": 0.0, "epoch": 0, "epochs": None, "history": [], "steps": [],
                           "status": None, "message": None, "messages": [], "eta_s": None}
    for e in events:
        kind = e.get("event")
        if kind == "run_start":
            out["epochs"] = e.get("epochs")
            out["history"] = [h for h in out["history"] if h["epoch"] <= _done(out)]
            out["status"] = "running"
        elif kind == "epoch_start":
            out["epoch"] = e.get("epoch", 0)
            out["epochs"] = e.get("epochs", out["epochs"])
        elif kind == "step":
            out["epoch"] = e.get("epoch", out["epoch"])
            steps = e.get("steps") or 0
            epochs = out["epochs"] or 1
            if steps:
                out["fraction"] = min(1.0, ((e["epoch"] - 1) + e.get("step", 0) / steps) / epochs)
            out["eta_s"] = e.get("eta_s")
            loss = (e.get("metrics") or {}).get("loss")
            if loss is not None:
                out["steps"].append({"t": len(out["steps"]), "loss": loss})
        elif kind == "epoch_end":
            row = {"epoch": e.get("epoch", 0), **(e.get("metrics") or {})}
            out["history"] = [h for h in out["history"] if h["epoch"] != row["epoch"]] + [row]
            out["fraction"] = min(1.0, row["epoch"] / (e.get("epochs") or out["epochs"] or row["epoch"]))
        elif kind == "message":
            out["messages"].append(e.get("text", ""))
        elif kind == "run_end":
            out["status"] = e.get("status")
            out["message"] = e.get("message")
            if out["status"] == "completed":
                out["fraction"] = 1.0
    return out


def _done(out: dict) -> int:
    return max((h["epoch"] for h in out["history"]), default=0)


# ---- uploaded zips ------------------------------------------------------------------------------
def extract_zip(data: bytes, dest_root: Path) -> Path:
    """Extract an uploaded zip under ``dest_root`` safely; return the data path to train on.

    Refused: members with absolute paths or ``..``, links, too many members, too many bytes unpacked, and
    members that expand by more than ``MAX_ZIP_RATIO`` (zip bombs). A zip holding one top folder (or one
    file) yields that folder (or file).
    """
    import io

    if len(data) > settings.MAX_ZIP_UPLOAD_BYTES:
        raise DataSourceError(f"the zip is {len(data)} bytes; the limit is {settings.MAX_ZIP_UPLOAD_BYTES}")
    if not data.startswith(b"PK"):
        raise DataSourceError("the uploaded file is not a zip archive")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataSourceError("the uploaded file is not a readable zip archive") from None
    with zf:
        members = zf.infolist()
        if len(members) > settings.MAX_ZIP_MEMBERS:
            raise DataSourceError(f"the zip has {len(members)} members; the limit is {settings.MAX_ZIP_MEMBERS}")
        total = 0
        for m in members:
            _check_member(m)
            total += m.file_size
            if total > settings.MAX_ZIP_UNPACKED_BYTES:
                raise DataSourceError(f"the zip unpacks to more than {settings.MAX_ZIP_UNPACKED_BYTES} bytes")
        digest = hashlib.sha256(data).hexdigest()[:16]
        dest = Path(dest_root) / digest
        if not dest.exists():
            tmp = Path(dest_root) / f".{digest}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                for m in members:
                    target = tmp.joinpath(*PurePosixPath(m.filename).parts)
                    if m.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_limited(zf, m, target)
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    entries = [p for p in dest.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise DataSourceError("the uploaded zip is empty")
    return dest


def _check_member(m: zipfile.ZipInfo) -> None:
    name = m.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts or not parts:
        raise DataSourceError(f"the zip member {m.filename!r} points outside the archive; refused")
    mode = (m.external_attr >> 16) & 0o170000
    if mode == 0o120000:
        raise DataSourceError(f"the zip member {m.filename!r} is a symbolic link; refused")
    if m.file_size > 1_000_000 and m.compress_size and m.file_size / m.compress_size > settings.MAX_ZIP_RATIO:
        raise DataSourceError(f"the zip member {m.filename!r} expands {m.file_size // m.compress_size}x; refused")


def _copy_limited(zf: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member, never writing more than its declared size (a lying header cannot fill the disk)."""
    written = 0
    with zf.open(m) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > m.file_size:
                raise DataSourceError(f"the zip member {m.filename!r} is larger than its header says; refused")
            dst.write(chunk)
