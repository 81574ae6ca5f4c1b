"""How the core finds the app without importing it: the app registers what `suite app` runs through the
entry-point group ``suite.app`` (this project's own app is one such entry), as plugins register tasks."""

from __future__ import annotations

from importlib.metadata import entry_points

from suite.errors import SuiteError

APP_GROUP = "suite.app"


def app_launch_spec() -> dict:
    """``{"entry": path of the Streamlit entry file, "flags": [streamlit run flags]}`` from the first installed
    app entry point; one clear line when none is installed."""
    found = sorted(entry_points(group=APP_GROUP), key=lambda ep: ep.name)
    if not found:
        raise SuiteError(f"no app is installed (entry-point group {APP_GROUP!r}): reinstall the suite with "
                         "`pip install -e .` or `make setup`")
    spec = found[0].load()()
    return {"entry": str(spec["entry"]), "flags": [str(f) for f in spec.get("flags", [])]}
