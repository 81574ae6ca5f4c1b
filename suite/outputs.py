"""One result schema per output kind, shared by the CLI's ``--json``, the app, exports and the plugin tests.

A task's ``postprocess`` returns one dict per input, by its ``output_kind``:

- ``classes``: ``{"label": str, "score": float, "top": [{"label": str, "score": float}, ...]}``
- ``text``: ``{"text": str}``

Either may carry more keys of the task's own (``truncated``, ``source_tokens``...) and the ``notices`` the
predictor adds. A SavedModel of a text task returns its strings under the same ``text`` key.

Version 0.1 named the text key ``translation`` after one task; its results and SavedModels still read through
:func:`text_of` and the export runners.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXT = "text"
LEGACY_TEXT_KEYS = ("translation",)


def text_of(result: Mapping[str, Any]) -> str | None:
    """The text of a text-output result (current or older key), or None for a result that holds none."""
    for key in (TEXT, *LEGACY_TEXT_KEYS):
        if key in result:
            return str(result[key])
    return None


def is_text(result: Mapping[str, Any]) -> bool:
    return text_of(result) is not None

