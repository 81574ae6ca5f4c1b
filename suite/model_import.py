"""Import a ``.keras`` model made elsewhere into a new run, without trusting it.

A model file is code-adjacent: its ``config.json`` names classes and modules that Keras imports and calls.
So an import goes, in order:

1. refuse anything that is not a ``.keras`` zip (``.h5`` files and SavedModel folders from outside can run
   code or carry graphs we cannot inspect);
2. copy the bytes once into a private staging file (what is checked is what is loaded is what is kept);
3. inspect the zip WITHOUT extracting it: member count, each member's size and compression ratio, no
   absolute, ``..``, link or encrypted members;
4. parse ``config.json`` and walk it: no ``Lambda``/``TFSMLayer``/lambda functions, only modules of Keras,
   KerasHub and the registered suite plugins, no file paths where vocabularies or weights belong;
5. load it with ``keras.saving.load_model(safe_mode=True)`` in a separate process that sets its own memory
   (``RLIMIT_AS``) and CPU limits before importing anything, under a wall-clock timeout;
6. only after the child reports success, create the run and move the staged file in as ``model.keras``.

Every refusal is a :class:`ModelImportError` with one line. Nothing here, or anywhere in the suite, ever turns
Keras's unsafe deserialization on (a test greps the code for it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from suite import atomic
from suite.errors import SuiteError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_PROBE_MARK = "SUITE-IMPORT "

# Classes that carry code or load outside files: never accepted, whatever their module says.
FORBIDDEN_CLASSES = {
    "Lambda": "a Lambda layer (arbitrary Python code)",
    "TFSMLayer": "a TFSMLayer (loads an outside SavedModel)",
    "__lambda__": "a serialized Python lambda",
    "TorchModuleWrapper": "a TorchModuleWrapper (pickled Torch code)",
    "JaxLayer": "a JaxLayer (wraps arbitrary functions)",
    "FlaxLayer": "a FlaxLayer (wraps arbitrary functions)",
}
# Top-level packages never allowed, even if something registered an object from them.
DENIED_PACKAGES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy", "code", "codeop",
    "pickle", "marshal", "types", "ctypes", "socket", "pty", "io", "pathlib", "tempfile", "functools",
    "operator", "inspect", "eval", "exec", "__main__", "webbrowser", "multiprocessing", "threading",
    "tensorflow", "tf_keras", "numpy", "pandas", "torch", "jax",
})
BASE_PACKAGES = ("keras", "keras_hub")
# Config keys that hold a vocabulary, merges or a tokenizer proto: a string there is a file path.
VOCAB_KEYS = frozenset({"vocabulary", "vocabulary_file", "vocab_file", "merges", "merges_file", "proto",
                        "spm_proto", "idf_weights", "vocabulary_path"})
# Config keys that name a file or folder to read.
PATH_KEYS = frozenset({"filepath", "file_path", "path", "filename", "saved_model_dir", "export_dir",
                       "weights_path", "weights_file"})
_MAX_DEPTH = 200


@dataclasses.dataclass(frozen=True)
class ImportLimits:
    """Caps for an imported model file; generous for real models, tight for bombs."""

    max_file_bytes: int = 2 << 30  # the .keras file on disk
    max_members: int = 2000
    max_member_bytes: int = 2 << 30  # one member, uncompressed
    max_total_bytes: int = 4 << 30  # all members, uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed for members past ratio_floor (Keras stores, ratio 1)
    ratio_floor: int = 1 << 20
    max_config_bytes: int = 32 << 20
    memory_mb: int = dataclasses.field(default_factory=lambda: int(os.environ.get("SUITE_IMPORT_MEMORY_MB", "6144")))
    timeout_s: float = dataclasses.field(
        default_factory=lambda: float(os.environ.get("SUITE_IMPORT_TIMEOUT_S", "180")))


class ModelImportError(SuiteError):
    """A model file that the suite refuses to import, or that failed to load safely."""


# ---- 1. what kind of file -----------------------------------------------------------------------------
def check_file_kind(path: Path) -> None:
    """Only a ``.keras`` zip file is accepted; ``.h5`` files and SavedModel folders are refused."""
    if not path.exists():
        raise ModelImportError(f"model file not found: {path}")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise ModelImportError(f"{path.name} is a SavedModel folder: only .keras files are imported "
                                   "(SavedModel graphs cannot be checked; re-save the model as .keras)")
        raise ModelImportError(f"{path.name} is a folder: give a .keras file")
    if not path.is_file():
        raise ModelImportError(f"{path.name} is not a regular file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() in (".h5", ".hdf5") or head == HDF5_MAGIC:
        raise ModelImportError(f"{path.name} is a legacy HDF5 (.h5) model: only .keras files are imported "
                               "(re-save it with model.save('model.keras'))")
    if path.suffix.lower() in (".pb", ".pbtxt"):
        raise ModelImportError(f"{path.name} is a SavedModel graph: only .keras files are imported")
    if path.suffix.lower() != ".keras":
        raise ModelImportError(f"{path.name}: only .keras model files are imported")
    if not zipfile.is_zipfile(path):
        raise ModelImportError(f"{path.name} is not a valid .keras file (not a zip archive)")


# ---- 2. the zip, without extracting ----------------------------------------------------------------------
def inspect_zip(path: Path, limits: ImportLimits | None = None) -> dict[str, Any]:
    """Check the archive's directory only; return the parsed ``config.json``. Nothing is written to disk."""
    limits = limits or ImportLimits()
    _check_directory_record(path, limits)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelImportError(f"{path.name} is not a valid .keras file ({err})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise ModelImportError(f"{path.name} has {len(infos)} zip members (at most {limits.max_members})")
        seen: set[str] = set()
        total = 0
        for info in infos:
            name = info.filename
            _check_member_name(name)
            if name in seen:
                raise ModelImportError(f"zip member {name!r} appears twice")
            seen.add(name)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ModelImportError(f"zip member {name!r} is a symbolic link")
            if info.flag_bits & 0x1:
                raise ModelImportError(f"zip member {name!r} is encrypted")
            if info.file_size > limits.max_member_bytes:
                raise ModelImportError(f"zip member {name!r} declares {_mb(info.file_size)} uncompressed "
                                       f"(at most {_mb(limits.max_member_bytes)})")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.ratio_floor and ratio > limits.max_ratio:
                raise ModelImportError(f"zip member {name!r} has compression ratio {ratio:.0f}:1 "
                                       f"(at most {limits.max_ratio:.0f}:1): a possible zip bomb")
            total += info.file_size
            if total > limits.max_total_bytes:
                raise ModelImportError(f"{path.name} declares over {_mb(limits.max_total_bytes)} uncompressed")
        if "config.json" not in seen:
            raise ModelImportError(f"{path.name} is not a .keras model: it has no config.json")
        if "model.weights.h5" not in seen and "model.weights.npz" not in seen:
            raise ModelImportError(f"{path.name} has no model.weights.h5: not a complete .keras model")
        info = zf.getinfo("config.json")
        if info.file_size > limits.max_config_bytes:
            raise ModelImportError(f"config.json declares {_mb(info.file_size)} (at most "
                                   f"{_mb(limits.max_config_bytes)})")
        with zf.open(info) as fh:
            raw = fh.read(limits.max_config_bytes + 1)  # never trust the declared size alone
        if len(raw) > limits.max_config_bytes:
            raise ModelImportError("config.json is larger than it declares")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelImportError(f"config.json is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ModelImportError("config.json is not a model config (not a JSON object)")
    return config


def _check_directory_record(path: Path, limits: ImportLimits) -> None:
    """Read the zip's end-of-directory record before ``zipfile`` parses the whole directory into memory."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (22 + 0xFFFF)))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ModelImportError(f"{path.name} is not a valid .keras file (no zip directory)")
    entries, dir_size, dir_offset = struct.unpack("<HII", tail[at + 10:at + 20])
    if entries == 0xFFFF or dir_size == 0xFFFFFFFF or dir_offset == 0xFFFFFFFF:
        raise ModelImportError(f"{path.name} is a ZIP64 archive: too large for a .keras model the suite imports")
    if entries > limits.max_members:
        raise ModelImportError(f"{path.name} has {entries} zip members (at most {limits.max_members})")
    if dir_size > limits.max_members * 1200:
        raise ModelImportError(f"{path.name} has a {_mb(dir_size)} zip directory: refused")


def _check_member_name(name: str) -> None:
    if not name or "\x00" in name or "\\" in name:
        raise ModelImportError(f"zip member name {name!r} is not allowed")
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ModelImportError(f"zip member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise ModelImportError(f"zip member {name!r} points outside the archive ('..')")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


# ---- 3. the config --------------------------------------------------------------------------------------
def allowed_packages(registry=None) -> tuple[set[str], set[str]]:
    """Top-level packages a config may name, and the registered ``package>Name`` objects it may use.

    Keras and KerasHub, plus the packages of the registered suite plugins (their tasks' modules) and of the
    objects registered as Keras serializable (the plugins' preprocessing layers).
    """
    import keras

    import suite.schedules  # noqa: F401  the core's own serializables (a trained model's optimizer names them)
    from suite.registry import get_registry

    reg = registry if registry is not None else get_registry()
    reg.import_keras_objects()
    packages = set(BASE_PACKAGES)
    for task in reg.tasks():
        packages.add(_top(type(task).__module__))
    registered = dict(keras.saving.get_custom_objects())
    for obj in registered.values():
        module = getattr(obj, "__module__", None) or ""
        if module:
            packages.add(_top(module))
    packages -= DENIED_PACKAGES
    packages.discard("")
    names = {n for n, obj in registered.items() if _top(getattr(obj, "__module__", "") or "") in packages}
    return packages, names


def _top(module: str) -> str:
    return str(module).split(".", 1)[0]


def check_config(config: Any, packages: set[str], registered_names: set[str]) -> None:
    """Walk the whole config; raise ModelImportError at the first forbidden thing, naming where it is."""
    for where, node in _walk(config, "config"):
        class_name = node.get("class_name")
        if isinstance(class_name, str) and class_name in FORBIDDEN_CLASSES:
            raise ModelImportError(f"refused: {where} is {FORBIDDEN_CLASSES[class_name]}")
        module = node.get("module")
        if module == "builtins" and class_name == "function":
            # How Keras saves a function by name: a registered one ("pkg>fn") or a Keras built-in ("relu").
            fn = node.get("config")
            if not (isinstance(fn, str) and (fn in registered_names or _keras_builtin_function(fn))):
                raise ModelImportError(f"refused: {where} names function {str(fn)[:60]!r}, which is neither a "
                                       "Keras built-in nor registered by a suite plugin")
        elif module is not None and (not isinstance(module, str) or _top(module) not in packages):
            raise ModelImportError(f"refused: {where} names module {str(module)[:60]!r}, which is not "
                                   f"Keras, KerasHub or a registered suite plugin")
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            package = registered.split(">", 1)[0]
            if registered not in registered_names and package not in BASE_PACKAGES:
                raise ModelImportError(f"refused: {where} uses {registered!r}, which no installed suite "
                                       "plugin registers")
            if registered in FORBIDDEN_CLASSES or registered.split(">")[-1] in FORBIDDEN_CLASSES:
                raise ModelImportError(f"refused: {where} is {FORBIDDEN_CLASSES[registered.split('>')[-1]]}")
        elif registered is not None and not isinstance(registered, str):
            raise ModelImportError(f"refused: {where} has a malformed registered_name")
        for key, value in node.items():
            lowered = str(key).lower()
            if lowered in VOCAB_KEYS and isinstance(value, str) and value:
                raise ModelImportError(f"refused: {where}.{key} is a file path ({value[:60]!r}); a vocabulary "
                                       "must be stored inside the model")
            if lowered in PATH_KEYS and isinstance(value, str) and value:
                raise ModelImportError(f"refused: {where}.{key} names a file ({value[:60]!r})")


_BUILTIN_FUNCTION_MODULES = ("activations", "constraints", "initializers", "losses", "metrics", "optimizers",
                             "regularizers")


def _keras_builtin_function(name: str) -> bool:
    """Whether Keras would resolve this bare name among its own built-in functions (what it does on load)."""
    if not name.isidentifier() or name.startswith("_"):
        return False
    import keras

    return any(callable(getattr(getattr(keras, mod, None), name, None)) for mod in _BUILTIN_FUNCTION_MODULES)


def custom_names(config: Any) -> set[str]:
    """The registered ``package>Name`` classes and functions a model config names (Keras' own excluded)."""
    names = set()
    for _, node in _walk(config, "config"):
        for value in (node.get("registered_name"), node.get("config") if node.get("module") == "builtins" else None):
            if isinstance(value, str) and ">" in value and _top(value.split(">", 1)[0]) not in BASE_PACKAGES:
                names.add(value)
    return names


def _walk(node: Any, where: str, depth: int = 0) -> Iterator[tuple[str, dict]]:
    if depth > _MAX_DEPTH:
        raise ModelImportError("refused: config.json is nested too deeply")
    if isinstance(node, dict):
        label = where
        if isinstance(node.get("class_name"), str):
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            label = f"{node['class_name']}" + (f" {name!r}" if isinstance(name, str) else "")
        yield label, node
        for key, value in node.items():
            yield from _walk(value, label if isinstance(node.get("class_name"), str) else f"{where}.{key}",
                             depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, where, depth + 1)


# ---- 4. load in a child process -------------------------------------------------------------------------
def probe_load(path: Path, limits: ImportLimits | None = None) -> dict[str, Any]:
    """Load ``path`` with safe_mode=True in a limited child process; return what it learnt, or raise."""
    limits = limits or ImportLimits()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""  # a probe needs no accelerator, and must not grab one
    cmd = [sys.executable, "-m", "suite.model_import", "--probe", str(path),
           "--memory-mb", str(limits.memory_mb),
           # CPU seconds add up over threads: the wall-clock timeout below is the real bound.
           "--cpu-s", str(int(limits.timeout_s * (os.cpu_count() or 1)) + 5)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limits.timeout_s, env=env,
                              start_new_session=True, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelImportError(f"loading the model took longer than {limits.timeout_s:.0f}s: refused") from None
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(_PROBE_MARK)), None)
    if line is None:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if proc.returncode == -signal.SIGXCPU:
            why = "ran out of its CPU-time limit"
        elif proc.returncode < 0:
            why = f"was killed by signal {-proc.returncode}"
        else:
            why = f"ended with code {proc.returncode}"
        detail = f": {tail[-1][:160]}" if tail else ""
        raise ModelImportError(f"the model-loading process {why} (memory limit {limits.memory_mb} MiB){detail}")
    result = json.loads(line[len(_PROBE_MARK):])
    if not result.get("ok"):
        raise ModelImportError(f"the model failed to load safely: {result.get('error', 'unknown error')}")
    return result


def _probe_main(path: str, memory_mb: int, cpu_s: int) -> int:
    """Child side: limit ourselves first, then import Keras and the plugins, then load."""
    import resource

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        from suite.registry import get_registry

        get_registry().import_keras_objects()  # every plugin's serializable classes
        import keras

        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        inputs = [{"name": getattr(t, "name", ""), "shape": _shape(t.shape), "dtype": str(t.dtype)}
                  for t in model.inputs]
        outputs = [{"shape": _shape(t.shape), "dtype": str(t.dtype)} for t in model.outputs]
        last = outputs[0]["shape"][-1] if outputs and outputs[0]["shape"] else None
        result = {"ok": True, "inputs": inputs, "outputs": outputs, "output_size": last,
                  "params": int(model.count_params()), "model_name": model.name}
    except MemoryError:
        result = {"ok": False, "error": f"it needs more than the {memory_mb} MiB memory limit"}
    except BaseException as err:  # anything the file makes Keras raise is a refusal
        from suite.errors import one_line

        text = one_line(err)
        if "ResourceExhausted" in text or "bad_alloc" in text or "OOM" in text:
            text = f"it needs more than the {memory_mb} MiB memory limit ({text.split(':', 1)[0]})"
        result = {"ok": False, "error": text[:300]}
    sys.stdout.write("\n" + _PROBE_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _shape(shape) -> list:
    return [None if d is None else int(d) for d in tuple(shape)]


# ---- 5. the whole import --------------------------------------------------------------------------------
def check_model_file(path: str | os.PathLike, limits: ImportLimits | None = None, registry=None) -> dict:
    """Steps 1, 3 and 4 on a file in place (no load): return the parsed config, or raise."""
    path = Path(path)
    check_file_kind(path)
    config = inspect_zip(path, limits)
    packages, names = allowed_packages(registry)
    check_config(config, packages, names)
    return config


def import_keras_model(path: str | os.PathLike, *, name: str, task: str,
                       class_names: list[str] | None = None, meta: dict | None = None,
                       store=None, limits: ImportLimits | None = None):
    """Import a ``.keras`` file made elsewhere as a new completed run of ``task`` named ``name``.

    ``class_names`` label a classifier's outputs (default ``"0".."N-1"``); ``meta`` adds task-specific
    metadata the plugin's ``decode_input`` needs. Raises :class:`ModelImportError` (one line) on refusal.
    """
    from suite.registry import get_registry
    from suite.runstore import RunStore, check_name, now_iso

    limits = limits or ImportLimits()
    store = store or RunStore()
    src = Path(path).expanduser()
    check_name(name)
    check_file_kind(src)  # cheap refusals first, before Keras and the plugins are imported
    if (store.root / name).exists():
        raise ModelImportError(f"a run named {name!r} already exists in {store.root}")
    registry = get_registry()
    task_obj = registry.get(task)  # PluginError (one line) for an unknown task
    size = src.stat().st_size
    if size > limits.max_file_bytes:
        raise ModelImportError(f"{src.name} is {_mb(size)} (at most {_mb(limits.max_file_bytes)})")

    store.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=store.root))
    try:
        staged = staging / "model.keras"
        digest = _copy_capped(src, staged, limits.max_file_bytes)
        check_file_kind(staged)  # the copy is what counts from here on
        config = inspect_zip(staged, limits)
        packages, names = allowed_packages(registry)
        check_config(config, packages, names)
        probe = probe_load(staged, limits)

        full_meta = dict(meta or {})
        output_size = probe.get("output_size")
        if task_obj.output_kind == "classes":
            if class_names is None:
                class_names = full_meta.get("class_names")
            if class_names is None:
                if not output_size:
                    raise ModelImportError("the model's output size is unknown: give its class names")
                class_names = [str(i) for i in range(int(output_size))]
            if output_size and len(class_names) != int(output_size):
                raise ModelImportError(f"the model has {output_size} outputs but {len(class_names)} class names "
                                       "were given")
            full_meta["class_names"] = list(class_names)
        full_meta.update({"input_shape": probe["inputs"][0]["shape"] if probe["inputs"] else None,
                          "input_dtype": probe["inputs"][0]["dtype"] if probe["inputs"] else None,
                          "inputs": probe["inputs"], "outputs": probe["outputs"], "output_size": output_size,
                          "imported": True})

        run = store.create(name, task_obj.name, data=f"import:{src.name}", imported_from=str(src),
                           sha256=digest, params=probe.get("params"))
        try:
            atomic.write_yaml(run.file("config.yaml"), task_obj.make_config().to_dict())
            atomic.write_json(run.file("meta.json"), full_meta)
            os.replace(staged, run.model_path)
            atomic._fsync_dir(run.path)
            run.update_info(status="completed", epochs_done=0, finished=now_iso())
        except BaseException:
            shutil.rmtree(run.path, ignore_errors=True)
            raise
        return run
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_capped(src: Path, dst: Path, cap: int) -> str:
    """Copy in chunks, never more than ``cap`` bytes (the file may grow while we read); return its sha256."""
    sha = hashlib.sha256()
    copied = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            copied += len(chunk)
            if copied > cap:
                raise ModelImportError(f"{src.name} is larger than {_mb(cap)}")
            sha.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return sha.hexdigest()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="internal: the limited model-loading probe")
    parser.add_argument("--probe", required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    args = parser.parse_args()
    sys.exit(_probe_main(args.probe, args.memory_mb, args.cpu_s))
