"""The app's server settings, in one place: `suite app` passes them as flags, `.streamlit/config.toml` mirrors them.

Streamlit reads ``.streamlit/config.toml`` only from the current directory and ``~/.streamlit``, so a user who
starts ``suite app`` elsewhere would otherwise lose XSRF protection or the upload limit.
"""

from __future__ import annotations

SERVER_SETTINGS: dict[str, object] = {
    "server.headless": True,
    "server.maxUploadSize": 200,  # MB per file
    "server.maxMessageSize": 200,  # MB
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.enableStaticServing": False,
    "server.enableAgentApi": False,
    "server.runOnSave": False,
    "server.fileWatcherType": "none",
    "browser.gatherUsageStats": False,
    "client.showErrorDetails": "type",
    "client.toolbarMode": "viewer",
}

# Upload limits the app enforces itself, on top of server.maxUploadSize.
MAX_PREDICT_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ZIP_UPLOAD_BYTES = SERVER_SETTINGS["server.maxUploadSize"] * 1024 * 1024  # type: ignore[operator]
MAX_ZIP_MEMBERS = 200_000
MAX_ZIP_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024
MAX_ZIP_RATIO = 200  # refuse members that expand more than this (zip bombs)


def launch_spec() -> dict:
    """What `suite app` runs; the core finds this through the ``suite.app`` entry point (pyproject.toml)."""
    from pathlib import Path

    return {"entry": str(Path(__file__).resolve().parent / "app.py"), "flags": streamlit_flags()}


def streamlit_flags() -> list[str]:
    """``--section.option=value`` flags for ``streamlit run``."""
    out = []
    for key, value in SERVER_SETTINGS.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(f"--{key}={text}")
    return out
