"""Hostile and broken plugins stay alone: each failure is listed with its reason, good plugins still load,
and ``suite plugins --check`` survives a plugin that hangs or kills its interpreter.

The plugins are throwaway modules in a temporary folder with a ``*.dist-info/entry_points.txt`` beside them,
put on the PYTHONPATH of a subprocess (or on ``sys.path`` for the in-process tests): nothing is pip-installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from suite.errors import PluginError
from suite.registry import ENTRY_POINT_GROUP, Registry

_TASK = '''
from suite.task import Task

class {cls}(Task):
    name = {name!r}
    title = "Throwaway {name}"
    input_kind = "table"

    def load_data(self, source, config):
        raise NotImplementedError

    def build_model(self, config, data):
        raise NotImplementedError
{decode}
'''
_DECODE = '''
    def decode_input(self, raw, meta):
        return raw
'''


def _task(cls: str, name: str, with_decode: bool = True) -> str:
    return _TASK.format(cls=cls, name=name, decode=_DECODE if with_decode else "")


# entry-point name -> module source (loaded in name order: iso_zduplicate comes after iso_good).
PLUGINS = {
    "iso_good": _task("Good", "iso_good_task") + "\ndef register(register):\n    register(Good())\n",
    "iso_good_two": _task("GoodTwo", "iso_second_task") + "\ndef register(register):\n    register(GoodTwo)\n",
    "iso_syntax": "def register(register)\n    pass\n",
    "iso_exit": "import sys\nsys.exit(3)\n",
    "iso_import_error": "import iso_no_such_module_anywhere\n",
    "iso_raises": "def register(register):\n    raise RuntimeError('boom while registering')\n",
    "iso_zduplicate": _task("Dup", "iso_good_task") + "\ndef register(register):\n    register(Dup())\n",
    "iso_missing": _task("Half", "iso_half_task", with_decode=False) + "\ndef register(register):\n"
                   "    register(Half())\n",
    # Only for --check: these would stop or hang a plain `suite plugins`.
    "iso_hang": (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
        "open(os.environ['ISO_PIDFILE'], 'w').write(str(child.pid))\n"
        "time.sleep(3600)\n"
    ),
    "iso_os_exit": "import os\nos._exit(7)\n",
    "iso_chatty": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n",
}
EXPECTED = {  # entry point -> a piece of its failure reason
    "iso_syntax": "import failed: SyntaxError",
    "iso_exit": "import failed: SystemExit: 3",
    "iso_import_error": "import failed: ModuleNotFoundError: No module named 'iso_no_such_module_anywhere'",
    "iso_raises": "register hook raised RuntimeError: boom while registering",
    "iso_zduplicate": "task name 'iso_good_task' is already registered by iso_good",
    "iso_missing": "missing required part(s): decode_input",
}
SAFE = [n for n in PLUGINS if n not in ("iso_hang", "iso_os_exit", "iso_chatty")]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iso-plugins")
    for name, source in PLUGINS.items():
        (root / f"{name}.py").write_text(source)
    dist = root / "iso_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: iso-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{n} = {n}:register\n" for n in PLUGINS)
    )
    return root


def _env(plugin_dir: Path, names: list[str], tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SUITE_PLUGINS"] = ",".join(names)
    env["ISO_PIDFILE"] = str(tmp_path / "grandchild.pid")
    return env


def _suite(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# ---- `suite plugins` in a subprocess ------------------------------------------------------------------
def test_suite_plugins_lists_good_ones_and_each_failure(plugin_dir, tmp_path):
    import json

    proc = _suite(["plugins", "--json"], _env(plugin_dir, SAFE, tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr  # sys.exit() in a plugin did not stop the command
    data = json.loads(proc.stdout)
    assert sorted(p["name"] for p in data["plugins"]) == ["iso_good_task", "iso_second_task"]
    reasons = {f["name"]: f["reason"] for f in data["failed"]}
    for name, piece in EXPECTED.items():
        key = "iso_good_task" if name == "iso_zduplicate" else ("iso_half_task" if name == "iso_missing" else name)
        assert piece in reasons.get(key, ""), (name, reasons)
    # The plain listing says the same, one line per failure.
    text = _suite(["plugins"], _env(plugin_dir, SAFE, tmp_path), timeout=60).stdout
    assert "iso_good_task" in text and text.count("FAILED ") == len(EXPECTED)


def test_check_reports_hang_and_hard_exit_within_bounded_time(plugin_dir, tmp_path):
    import json

    names = ["iso_good", "iso_hang", "iso_os_exit", "iso_exit", "iso_zduplicate", "iso_syntax", "iso_chatty"]
    start = time.monotonic()
    proc = _suite(["plugins", "--check", "--timeout", "5", "--json"], _env(plugin_dir, names, tmp_path),
                  timeout=90)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    results = {r["entry_point"]: r for r in json.loads(proc.stdout)}
    assert set(results) == set(names)
    assert results["iso_good"]["ok"] and results["iso_good"]["tasks"] == ["iso_good_task"]
    assert results["iso_hang"]["timed_out"] and "timed out after 5s" in results["iso_hang"]["detail"]
    assert 4.5 <= results["iso_hang"]["seconds"] < 30
    assert "ended the process while loading (exit code 7)" in results["iso_os_exit"]["detail"]
    assert "SystemExit: 3" in results["iso_exit"]["detail"]
    assert "SyntaxError" in results["iso_syntax"]["detail"]
    assert "already registered by iso_good" in results["iso_zduplicate"]["detail"]
    # 100 MiB on stdout: the probe's output file is capped, so the write fails and is reported.
    assert not results["iso_chatty"]["ok"] and "File too large" in results["iso_chatty"]["detail"]
    assert len(proc.stdout) < 1 << 20
    assert elapsed < 60, elapsed
    # The hanging plugin's own child was killed with it (the probe runs in its own session).
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"grandchild {pid} of the hanging plugin survived the timeout"


def test_check_plain_output_marks_each_plugin(plugin_dir, tmp_path):
    proc = _suite(["plugins", "--check", "--timeout", "20"], _env(plugin_dir, ["iso_good", "iso_raises"], tmp_path),
                  timeout=60)
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("ok ") and "iso_good" in ln for ln in lines), lines
    assert any(ln.startswith("FAIL") and "boom while registering" in ln for ln in lines), lines


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


# ---- the Registry in-process -------------------------------------------------------------------------
@pytest.fixture()
def on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    yield
    for name in PLUGINS:
        sys.modules.pop(name, None)


def _load(reg: Registry, name: str) -> None:
    reg.load_entry_point(EntryPoint(name=name, value=f"{name}:register", group=ENTRY_POINT_GROUP))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_records_each_failure_and_keeps_the_good(on_path, name):
    reg = Registry()
    _load(reg, "iso_good")
    _load(reg, name)
    _load(reg, "iso_good_two")
    assert reg.names() == ["iso_good_task", "iso_second_task"]
    assert len(reg.failures) == 1
    failure = reg.failures[0]
    assert EXPECTED[name] in failure.reason, failure
    assert "\n" not in failure.reason
    assert failure.source.startswith(f"{name} = {name}:register")
    if name not in ("iso_zduplicate",):
        with pytest.raises(PluginError, match="failed to load"):
            reg.get(failure.name)


def test_registry_rejects_non_tasks_and_broken_classes():
    from suite.task import Task

    class Broken(Task):
        name = "iso_broken"
        title = "Broken"
        input_kind = "table"

        def __init__(self):
            raise ValueError("cannot build")

    class BadKind(Task):
        name = "iso_badkind"
        title = "Bad kind"
        input_kind = "smell"

    reg = Registry()
    assert reg.register(object()) is None
    assert reg.register(Broken) is None
    assert reg.register(BadKind) is None
    reasons = [f.reason for f in reg.failures]
    assert "registered object is not a suite.task.Task" in reasons[0]
    assert "could not be instantiated: cannot build" in reasons[1]
    assert "input_kind (one of" in reasons[2]
    assert len(reg) == 0


def test_check_entry_point_unknown_name():
    from suite.plugin_check import check_entry_point

    result = check_entry_point("iso_not_installed_anywhere", timeout=30)
    assert not result["ok"] and "no installed plugin" in result["detail"]
