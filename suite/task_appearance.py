"""How a task appears in the app: its input widgets, examples, views of an input, extra page sections (one
role of the task contract; ``suite.task.Task`` joins the three roles). Nothing here imports Streamlit: the app
reads these declarations, so a plugin gets a proper page without importing the app (docs/PLUGINS.md, section 4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from suite.views import View


@dataclasses.dataclass
class Example:
    """An example input shown in the app and used by tests: ``value`` is what a user would give."""

    name: str
    value: bytes | str
    expected: str | None = None  # the label a good model should predict, when known


def quoted(text: str, words: int = 6) -> str:
    """An example's name from its own text: the first ``words`` words in quotes ("Where is the train…"), so a
    list of examples reads as what they hold, not "example 1..5"."""
    parts = str(text).split()
    return "\u201c" + " ".join(parts[:words]) + ("\u2026" if len(parts) > words else "") + "\u201d"


@dataclasses.dataclass(frozen=True)
class Drawing:
    """The app's drawing pad for an image task ("Draw" beside Upload and Camera): colours and pen chosen to look
    like the training data (white strokes on black for MNIST-like digits), so a drawing is an in-distribution
    input. The drawn PNG goes through the same decoding as an upload."""

    background: str = "#ffffff"
    pen: str = "#000000"
    pen_width: int = 18  # pixels on the pad
    side: int = 280  # the pad is square, this many pixels a side
    hint: str = "Draw with the mouse or a finger, then let go to predict."


class Appearance:
    """What the app's generic page reads to draw a task."""

    input_kind: ClassVar[str] = ""  # one of INPUT_KINDS: picks the app's input widgets
    output_title: ClassVar[str] = "Output"  # heading over a text result in the app, e.g. "Translation"
    upload_types: ClassVar[tuple[str, ...]] = ()  # file extensions the app's uploader offers
    # What the built-in sample is and what a model trained on it can be expected to do, in one plain sentence
    # (shown beside sample models on the page and in their model card).
    sample_description: ClassVar[str] = ""
    # Rough seconds the sample model takes to train on a quiet 2-core machine (0 = unknown): the app balances
    # its background lanes and its first "ready in ~N s" with it.
    sample_seconds: ClassVar[float] = 0.0
    page: ClassVar[Any] = None  # optional callable(task) drawing a whole page of its own instead of the generic one

    def examples(self, meta: dict) -> list[Example]:
        """Example inputs for the app's "Try it" tab and for tests."""
        return []

    def warmup_inputs(self, meta: dict) -> list[Any]:
        """Raw inputs the app predicts on once when it loads a model, so that the user's first prediction does not
        pay for tracing: one per input shape the compiled call should see. Default: the first example."""
        return [e.value for e in self.examples(meta)[:1]]

    def drawing(self, meta: dict) -> Drawing | None:
        """A drawing pad for this model's inputs (image tasks), or None for no "Draw" input. Default: none."""
        return None

    def input_views(self, x: np.ndarray, meta: dict) -> list[View]:
        """Drawings of one decoded input as the model sees it (``suite.views.View``: a waveform over seconds, a
        spectrogram, a signal's plot), shown under the prediction on the app's page. Default: none."""
        return []

    def page_sections(self) -> dict[str, Callable[[Any, Any], None]]:
        """Sections of your own added at the end of tabs of the generic page, ``{tab title: fn(ui, run)}``
        with tab titles "Try it", "Train", "Evaluate" and "Export"; ``ui`` is the ``streamlit`` module and
        ``run`` the selected run (None before any). The generic tab stays; to replace the whole page, set
        ``page``. Default: none."""
        return {}

    def preview(self, x: Any) -> str | bytes:
        """A short preview of one raw input for reports: text, or PNG bytes for images."""
        return str(x)[:200]
