"""Import TensorFlow and Keras once, under one lock, before threads race to import them.

Streamlit runs each session's script in its own thread: two sessions that import ``tensorflow`` and
``keras`` at the same moment on a fresh server can deadlock in the import system and leave TensorFlow half
registered ("Registering two gradient with name ..."), breaking every later prediction.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False


def import_tensorflow_and_keras() -> None:
    global _done
    if _done:
        return
    with _lock:
        if not _done:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401

            _done = True
