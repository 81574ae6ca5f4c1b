"""The task contract by role, and its reference table in docs/PLUGINS.md, generated from the code.

``python -m suite.contract`` prints the table; tests/test_contract_docs.py fails when the docs and the code
disagree (a part added, renamed, retyped or given another default), so the reference cannot drift.
"""

from __future__ import annotations

import inspect
import typing

# Every public part of Task and ClassificationTask under the one role it plays. "core" parts are the suite's
# own helpers: plugins use or inherit them, never override them.
ROLES: dict[str, tuple[str, ...]] = {
    "what it is": ("name", "title", "description", "config_class", "keras_modules"),
    "how it learns": ("load_data", "data_formats", "tfds_examples", "sample_synthetic", "sample_overrides", "plan",
                      "build_inputs", "build_preprocessor", "build_backbone", "head_dropout", "build_model", "batch",
                      "loss", "metrics", "optimizer", "monitor", "monitor_mode", "evaluate", "distill_students"),
    "how it serves": ("output_kind", "decode_input", "stack_inputs", "predict_batch", "predict_encoded",
                      "postprocess", "explain", "input_notes", "output_notes", "export_limits",
                      "serving_signatures", "portable_graph"),
    "how it appears": ("input_kind", "output_title", "upload_types", "examples", "input_views", "page_sections",
                       "preview", "sample_description", "sample_seconds", "page"),
    "core": ("REQUIRED_METHODS", "import_keras_objects", "missing_parts", "make_config"),
}

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
        return f"method {sig}", "required" if name in getattr(klass, "REQUIRED_METHODS", ()) else "inherited"
    hint = typing.get_type_hints(klass).get(name)
    inner = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.ClassVar else hint
    text = getattr(inner, "__name__", None) if inner in (str, bool, int, float) else str(inner)
    return str(text).replace("typing.", ""), repr(value)


def reference_table() -> str:
    """The Markdown table of every part of ``ClassificationTask`` (and so of ``Task``), grouped by role."""
    from suite.task import ClassificationTask, Task

    found = parts(ClassificationTask)
    rows = ["| role | part | type or signature | default |", "|---|---|---|---|"]
    for role, names in ROLES.items():
        for name in names:
            klass, value = found[name]
            kind, default = _describe(klass, name, value)
            where = "" if klass is Task else f" ({klass.__name__})"
            kind, default = (t.replace("|", "\\|") for t in (kind, default))  # a bar would end the cell
            rows.append(f"| {role} | `{name}`{where} | `{kind}` | `{default}` |")
    return "\n".join(rows)


def unassigned() -> list[str]:
    """Public parts that no role names (a new part must be given one)."""
    from suite.task import ClassificationTask

    named = {n for names in ROLES.values() for n in names}
    return sorted(set(parts(ClassificationTask)) - named)


if __name__ == "__main__":
    print(f"{START}\n{reference_table()}\n{END}")
