"""Test-wide settings: no stray plugins, no network, runs in a temporary folder, quiet TensorFlow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILTINS = ["image_classification", "sentiment", "translation", "speech_commands"]

# Only the project's own plugins (and the example plugin the tests install) load in tests.
os.environ["SUITE_PLUGINS"] = ",".join([*BUILTINS, "tabular_classification"])
os.environ.setdefault("SUITE_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("SUITE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))


def pytest_configure(config):
    _ensure_example_plugin_installed()


def _ensure_example_plugin_installed() -> None:
    """The tests find the example third-party plugin through its entry point, so it must be pip-installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("suite-tabular")
        return
    except PackageNotFoundError:
        pass
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
         str(ROOT / "examples" / "tabular_plugin")],
        check=True,
    )
    import importlib

    importlib.invalidate_caches()


@pytest.fixture()
def suite_home(tmp_path, monkeypatch):
    home = tmp_path / "runs"
    monkeypatch.setenv("SUITE_HOME", str(home))
    return home


@pytest.fixture(autouse=True, scope="session")
def _session_home(tmp_path_factory):
    os.environ.setdefault("SUITE_HOME", str(tmp_path_factory.mktemp("suite-home")))
    yield


def shared_data(*parts: str) -> Path:
    """A path under the shared real data; tests that need it skip cleanly when it is absent."""
    path = Path(os.environ["SUITE_SHARED_DATA"]).joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set SUITE_SHARED_DATA)")
    return path
