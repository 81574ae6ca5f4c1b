"""What a pip install puts in site-packages: the core as `suite`, the built-in plugins as `suite_plugins` and the
app as `suite_app` (the folders stay plugins/ and apps/), and no generic top-level `plugins` or `apps` that
other distributions also ship."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
INSTALLED_AS = {"suite": "suite", "plugins": "suite_plugins", "apps": "suite_app"}


def _listed_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_listed_under_its_installed_name():
    want = set()
    for folder, name in INSTALLED_AS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".tmpl") and "__pycache__" not in path.parts:
                rel = path.parent.relative_to(ROOT / folder).parts
                want.add(".".join((name, *rel)))
    assert want == _listed_packages(), "pyproject.toml [tool.setuptools] packages is out of date"


def test_the_wheel_installs_no_generic_top_level_names(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             "test-artifacts", ".pytest_cache", ".ruff_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("keras_task_suite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"suite", "suite_plugins", "suite_app"}, tops
    assert "suite_plugins/image_classification/layers.py" in names and "suite_app/app.py" in names
    assert "suite/templates/plugin/task.py.tmpl" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "suite_plugins.image_classification:register" in text and "suite_app.settings:launch_spec" in text


def test_outside_the_checkout_only_the_projects_own_names_import(tmp_path):
    code = ("import importlib.util as u; print(u.find_spec('plugins') is None, u.find_spec('apps') is None, "
            "u.find_spec('suite_plugins.sentiment') is not None, u.find_spec('suite_app.task_page') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr
