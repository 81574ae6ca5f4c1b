"""Quiet by default: TensorFlow's C++ start-up lines, absl logging and library warnings are not the user's business.

TensorFlow writes some lines (``I0000 ... oneDNN custom operations are on``, ``cudart_stub.cc``) from C++ before
its log settings are read, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them: while ``tensorflow`` is first imported,
file descriptor 2 points at /dev/null. ``suite -v`` or ``SUITE_LOG_LEVEL=info|debug`` brings everything back.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings

VERBOSE_LEVELS = ("debug", "info")


def verbose_from_env() -> bool:
    return os.environ.get("SUITE_LOG_LEVEL", "").strip().lower() in VERBOSE_LEVELS


@contextlib.contextmanager
def muted_fd(fd: int = 2):
    """Point ``fd`` at /dev/null for the duration (C and C++ writes included); Python's own ``sys.stderr`` is
    flushed first so nothing of ours is lost."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once and runs its module code with stderr muted."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with muted_fd(2):
                exec_module(module)

        spec.loader.exec_module = quiet_exec
        return spec


def install(verbose: bool = False) -> None:
    """Silence TensorFlow, absl and library warnings for this process (and its children), unless ``verbose``."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    for name in ("tensorflow", "absl", "keras", "h5py", "tf2onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("keras", "tensorflow", "tf2onnx", "tensorflow_datasets", "google.protobuf", "absl"):
        warnings.filterwarnings("ignore", module=module)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # worker and helper processes inherit it
