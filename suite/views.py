"""What a plugin shows beside a prediction, described as data: the app draws it, tests read it, and the plugin
never imports Streamlit or the app to get a plot on its page (``Task.input_views``)."""

from __future__ import annotations

import dataclasses
from typing import Any

KINDS = ("line", "heatmap", "image", "table")


@dataclasses.dataclass(frozen=True)
class View:
    """One drawing.

    - ``line``: ``data`` maps column names to equal-length sequences; ``x`` names the column on the x axis
      (with its unit, e.g. ``"seconds"``), every other column is a series.
    - ``heatmap``: ``data`` is a 2-D array of values (rows drawn bottom-up: row 0 at the bottom, as for
      spectrogram frequencies), coloured low to high.
    - ``image``: ``data`` is an ``HxW`` or ``HxWx3`` uint8 array.
    - ``table``: ``data`` is a list of row dicts.
    """

    kind: str
    data: Any
    caption: str = ""
    x: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"View kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "line" and self.x and self.x not in self.data:
            raise ValueError(f"line View: x column {self.x!r} is not in its data ({', '.join(self.data)})")
