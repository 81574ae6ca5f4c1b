"""The task contract by role, and its reference table in docs/PLUGINS.md, generated from the code.

``python -m suite.contract`` prints the table; tests/test_contract_docs.py fails when the docs and the code
disagree (a part added, renamed, retyped or given another default), so the reference cannot drift.
"""

from __future__ import annotations

import inspect
import typing

# What the task is lives on Task itself; the three roles are its bases (suite/task_learning.py, task_serving.py,
# task_appearance.py). "core" parts are the suite's own helpers: plugins use or inherit them, never override them.
IDENTITY = ("name", "title", "description", "config_class", "keras_modules")
CORE = ("REQUIRED_METHODS", "import_keras_objects", "missing_parts", "retired_parts", "make_config")


def roles() -> dict[str, tuple[str, ...]]:
    """Every public part of ``ClassificationTask`` under the one role it plays, from where it is defined (the
    classifier's own building blocks, ``build_inputs``..., are how it learns)."""
    from suite.task import ClassificationTask, Learning, Serving, Task
    from suite.task_appearance import Appearance

    out: dict[str, list[str]] = {"what it is": list(IDENTITY), "how it learns": [], "how it serves": [],
                                 "how it appears": [], "core": list(CORE)}
    for role, cls in (("how it learns", Learning), ("how it serves", Serving), ("how it appears", Appearance)):
        out[role] += [n for n in vars(cls) if not n.startswith("_")]
    named = {n for names in out.values() for n in names}
    out["how it learns"] += [n for n in vars(ClassificationTask) if not n.startswith("_") and n not in named
                             and n not in vars(Task)]
    return {role: tuple(names) for role, names in out.items()}


START, END = "<!-- contract:start -->", "<!-- contract:end -->"


def parts(cls) -> dict[str, object]:
    """Public parts of ``cls`` and its bases up to ``object``, nearest definition first."""
    out: dict[str, object] = {}
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and name not in out:
                out[name] = (klass, value)
    return out


def _describe(klass, name: str, value) -> tuple[str, str]:
    """(type or signature, default) of one part, as the docs show them."""
    if isinstance(value, type):
        return "type", value.__name__
    func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
    if callable(func):
        sig = str(inspect.signature(func)).replace("'", "")
        from suite.task import ClassificationTask, Task

        if name in ClassificationTask.REQUIRED_METHODS:
            return f"method {sig}", "required"
        return f"method {sig}", "required in a plain Task" if name in Task.REQUIRED_METHODS else "inherited"
    hint = typing.get_type_hints(klass).get(name)
    inner = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.ClassVar else hint
    text = getattr(inner, "__name__", None) if inner in (str, bool, int, float) else str(inner)
    return str(text).replace("typing.", ""), repr(value)


def reference_table() -> str:
    """The Markdown table of every part of ``ClassificationTask`` (and so of ``Task``), grouped by role."""
    from suite.task import ClassificationTask

    found = parts(ClassificationTask)
    rows = ["| role | part | type or signature | default |", "|---|---|---|---|"]
    for role, names in roles().items():
        for name in names:
            klass, value = found[name]
            kind, default = _describe(klass, name, value)
            where = " (ClassificationTask)" if klass is ClassificationTask else ""
            kind, default = (t.replace("|", "\\|") for t in (kind, default))  # a bar would end the cell
            rows.append(f"| {role} | `{name}`{where} | `{kind}` | `{default}` |")
    return "\n".join(rows)


def unassigned() -> list[str]:
    """Public parts that no role names (a new part must be given one)."""
    from suite.task import ClassificationTask

    named = {n for names in roles().values() for n in names}
    return sorted(set(parts(ClassificationTask)) - named)


if __name__ == "__main__":
    print(f"{START}\n{reference_table()}\n{END}")
