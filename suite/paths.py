"""Where the suite's own files are (the app entry, templates), whether installed editable or not."""

from __future__ import annotations

from pathlib import Path


def app_entry() -> Path:
    import apps

    return Path(apps.__file__).resolve().parent / "app.py"
