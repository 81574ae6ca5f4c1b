"""Importing a ``.keras`` model from the app: checked by content, then the CLI's checked import in a subprocess.

The server never parses or loads the uploaded model itself: it sniffs the first bytes and the zip's member
names (so an ``.h5`` or SavedModel is refused with a clear line whatever its file name), writes the bytes to a
private file, and runs ``suite import-model`` as a child process under a wall-clock timeout. That child does the
``config.json`` and zip checks and loads the model with ``safe_mode=True`` in its own memory- and time-limited
grandchild (``suite/model_import.py``). A crash, a hang or a memory blow-up there costs the app nothing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from suite.model_import import HDF5_MAGIC, ModelImportError
from suite.runstore import Run, RunStore, check_name

MAX_MODEL_UPLOAD_BYTES = 200 * 1024 * 1024  # the server's maxUploadSize; a bigger model goes through the CLI
IMPORT_TIMEOUT_S = 300.0
_ROOT = Path(__file__).resolve().parent.parent


def sniff(data: bytes, filename: str = "upload") -> None:
    """Refuse, by content, anything that is not a ``.keras`` zip: HDF5, a SavedModel, or not a zip at all."""
    if not data:
        raise ModelImportError(f"{filename} is empty")
    if len(data) > MAX_MODEL_UPLOAD_BYTES:
        raise ModelImportError(f"{filename} is {len(data) >> 20} MiB; the app imports models up to "
                               f"{MAX_MODEL_UPLOAD_BYTES >> 20} MiB (use `suite import-model` for bigger ones)")
    if data[:8] == HDF5_MAGIC:
        raise ModelImportError(f"{filename} is a legacy HDF5 (.h5) model: only .keras files are imported "
                               "(re-save it with model.save('model.keras'))")
    if not data.startswith(b"PK"):
        raise ModelImportError(f"{filename} is not a .keras model (not a zip archive); .h5 files and SavedModel "
                               "folders are refused")
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ModelImportError(f"{filename} is not a valid .keras file ({err})") from None
    if any(n.rsplit("/", 1)[-1] in ("saved_model.pb", "saved_model.pbtxt") for n in names):
        raise ModelImportError(f"{filename} holds a SavedModel: only .keras files are imported (SavedModel graphs "
                               "cannot be checked; re-save the model as .keras)")
    if "config.json" not in names:
        raise ModelImportError(f"{filename} is a zip but not a .keras model: it has no config.json")


def import_upload(data: bytes, filename: str, *, task: str, name: str, store: RunStore,
                  class_names: list[str] | None = None, meta: dict | None = None,
                  timeout: float = IMPORT_TIMEOUT_S) -> Run:
    """Import uploaded bytes as a new run of ``task``; ModelImportError (one line) when refused."""
    name = name.strip()
    check_name(name)
    sniff(data, filename)
    store.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-import-", dir=store.root))
    try:
        path = staging / "model.keras"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        args = [sys.executable, "-m", "suite.cli", "import-model", str(path), "--task", task, "--name", name,
                "--json"]
        if class_names:
            args += ["--classes", ",".join(class_names)]
        if meta:
            meta_path = staging / "meta.json"
            meta_path.write_text(json.dumps(meta), encoding="utf-8")
            args += ["--meta", str(meta_path)]
        env = dict(os.environ, SUITE_HOME=str(store.root.resolve()), CUDA_VISIBLE_DEVICES="")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL, cwd=str(_ROOT), start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ModelImportError(f"importing {filename} took longer than {timeout:.0f} s: refused") from None
        if proc.returncode != 0:
            raise ModelImportError(_error_line(proc.stderr, proc.returncode))
        return store.get(name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _error_line(stderr: str, code: int) -> str:
    """The CLI's one-line ``error: ...`` (without the prefix); a generic line if it crashed without one."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error: "):
            return ln[len("error: "):]
    return f"the import process ended with code {code}" + (f": {lines[-1][:200]}" if lines else "")


def parse_meta(text: str) -> dict | None:
    """The optional task metadata typed in the app, as a JSON object."""
    if not text.strip():
        return None
    try:
        meta = json.loads(text)
    except ValueError as err:
        raise ModelImportError(f"the task metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelImportError("the task metadata must be a JSON object, e.g. {\"n_features\": 4}")
    return meta
