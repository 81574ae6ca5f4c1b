"""``suite new-plugin NAME``: a pip-installable plugin package that passes the shared plugin tests as made."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from suite.errors import SuiteError

TEMPLATES = Path(__file__).parent / "templates" / "plugin"


def scaffold_plugin(name: str, directory: Path) -> Path:
    task_name = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not task_name or not task_name[0].isalpha():
        raise SuiteError(f"plugin name {name!r} must start with a letter (letters, digits, '_' or '-')")
    dist_name = f"suite-{task_name.replace('_', '-')}"
    package = f"suite_{task_name}"
    values = {
        "task_name": task_name,
        "dist_name": dist_name,
        "package": package,
        "class_name": "".join(part.capitalize() for part in task_name.split("_")) + "Task",
        "title": task_name.replace("_", " ").capitalize(),
    }
    root = Path(directory) / dist_name
    if root.exists():
        raise SuiteError(f"{root} already exists")
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{package}/__init__.py": "__init__.py.tmpl",
        f"{package}/task.py": "task.py.tmpl",
        "tests/test_plugin.py": "test_plugin.py.tmpl",
    }
    for rel, template in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template((TEMPLATES / template).read_text()).substitute(values))
    return root
