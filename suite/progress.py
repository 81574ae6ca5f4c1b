"""Progress of long loops (evaluation today) for whoever shows it; the CLI draws it on stderr.

A context variable rather than a parameter: ``Task.evaluate`` keeps its signature, and the core's loops and any
plugin's own report with one call, ``advance(n)``, which costs nothing when nobody listens.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator

_sink: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("suite_progress", default=None)


def advance(n: int) -> None:
    """``n`` more examples done in the loop being reported (if any)."""
    sink = _sink.get()
    if sink is not None:
        sink(int(n))


@contextlib.contextmanager
def counting(show: Callable[[int, int | None], None] | None, total: int | None) -> Iterator[None]:
    """Within the block, ``advance`` calls add up and ``show(done, total)`` hears of each."""
    if show is None:
        yield
        return
    done = 0

    def sink(n: int) -> None:
        nonlocal done
        done += n
        show(done, total)

    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


class StderrBar:
    """``evaluating: 1,280/10,000 examples (13%)``: redrawn in place on a terminal (at most 10 times a second),
    a plain line every ``log_every`` seconds when stderr is a log file."""

    def __init__(self, label: str, stream=None, log_every: float = 10.0):
        self.label, self.stream, self.log_every = label, stream or sys.stderr, log_every
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: float | None = None  # not 0.0: monotonic time starts near 0 on a freshly booted machine
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        recent = self._last is not None and now - self._last < (0.1 if self.tty else self.log_every)
        if recent and not (total and done >= total):
            return
        self._last = now
        text = f"{self.label}: {done:,}" + (f"/{total:,} examples ({100 * done / total:.0f}%)" if total else
                                             " examples")
        self.stream.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
