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
