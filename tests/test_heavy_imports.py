"""Concurrent first imports of TensorFlow and Keras from threads (as Streamlit sessions do) must not break."""

import subprocess
import sys

CODE = """
import threading
from suite.heavy_imports import import_tensorflow_and_keras
errors = []
def go():
    try:
        import_tensorflow_and_keras()
        import keras, tensorflow as tf
        keras.layers.Dense(2)(tf.zeros((1, 3)))
    except BaseException as err:
        errors.append(repr(err))
threads = [threading.Thread(target=go) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ERRORS", errors)
"""


def test_threads_importing_tensorflow_and_keras_at_once_do_not_deadlock():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERRORS []" in proc.stdout


HOME_WITHOUT_TF = """
import os, sys
class Refuse:  # any import of TensorFlow or Keras fails, so a page that needs one shows that error
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError("TensorFlow was imported: " + name)
sys.meta_path.insert(0, Refuse())
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
print("TITLE", [t.value for t in at.title])
print("PLUGINS", sum("input:" in str(m.value) for m in at.markdown))
print("SUBHEADERS", [s.value for s in at.subheader])
print("ERRORS", [str(e.value)[:80] for e in at.error])
print("EXCEPTIONS", len(at.exception))
"""


def test_home_and_the_sidebar_render_without_importing_tensorflow(tmp_path):
    """First paint: the registry, Home's plugin list, runs and the navigation need no TensorFlow; only the
    machine section (device detection), drawn last, does."""
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "apps" / "app.py"
    env = {**__import__("os").environ, "SUITE_HOME": str(tmp_path), "SUITE_APP_PREPARE_SAMPLES": "0"}
    proc = subprocess.run([sys.executable, "-c", HOME_WITHOUT_TF, str(app)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert out["TITLE"] == "['Keras Task Suite']", proc.stdout
    assert int(out["PLUGINS"]) >= 4, proc.stdout  # the built-ins, listed from the registry
    assert "Recent runs" in out["SUBHEADERS"] and "This machine" in out["SUBHEADERS"]
    errors = eval(out["ERRORS"])  # noqa: S307  (our own repr of a list of str)
    assert len(errors) == 1 and "Hardware" in errors[0] and "TensorFlow was imported" in errors[0], errors
    assert out["EXCEPTIONS"] == "0"
