"""The layers stay apart: the core never imports the app, neither names a built-in task in code, and every
output kind has one result schema (older results still read)."""

from __future__ import annotations

import ast
from pathlib import Path

from suite.outputs import TEXT, is_text, text_of

ROOT = Path(__file__).resolve().parent.parent
BUILTIN_NAMES = ("image_classification", "sentiment", "translation", "speech_commands")
# The one place a built-in name is allowed in code: the key version 0.1 wrote for text results.
COMPAT = {("suite/outputs.py", "translation")}


def _modules(folder: str):
    for path in sorted((ROOT / folder).rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_the_core_never_imports_the_app():
    offenders = []
    for rel, tree in _modules("suite"):
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}:{node.lineno} {n}" for n in names if n == "apps" or n.startswith("apps.")]
    assert not offenders, offenders


def test_no_built_in_task_name_in_core_or_app_code():
    offenders = []
    for folder in ("suite", "apps"):
        for rel, tree in _modules(folder):
            skip = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                    offenders += [f"{rel}:{node.lineno} {name!r}" for name in BUILTIN_NAMES
                                  if name in node.value and (rel, name) not in COMPAT]
    assert not offenders, offenders


def test_the_app_is_found_through_its_entry_point():
    from suite.paths import app_launch_spec
    from suite_app.settings import streamlit_flags

    spec = app_launch_spec()
    assert Path(spec["entry"]) == ROOT / "apps" / "app.py"
    assert spec["flags"] == streamlit_flags()


def test_text_results_have_one_schema_and_old_ones_still_read():
    assert text_of({TEXT: "hola"}) == "hola" and is_text({TEXT: ""})
    assert text_of({"translation": "hola"}) == "hola"  # written by version 0.1
    assert text_of({"label": "cat", "score": 0.9, "top": []}) is None and not is_text({"label": "cat"})
