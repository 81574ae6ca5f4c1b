"""suite/compat.py: each private Keras/TensorFlow internal works on the pinned versions, and a version where it
moved gives one clear line naming it."""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from suite import compat
from suite.compat import CompatError


def test_a_moved_internal_is_one_clear_line():
    with pytest.raises(CompatError, match=r"reading a TextVectorization vocabulary: SimpleNamespace._lookup_layer "
                                          r"is gone in Keras .*suite/compat.py needs updating"):
        compat.lookup_layer(types.SimpleNamespace())


def test_text_vectorization_internals():
    vec = keras.layers.TextVectorization(max_tokens=10, output_mode="tf_idf")
    vec.adapt(["a b", "a c"])
    assert compat.lookup_layer(vec).max_tokens == 10
    assert np.asarray(compat.idf_weights(vec)).shape == (len(vec.get_vocabulary()),)


def test_build_from_one_batch_builds_the_model_for_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    strategy = tf.distribute.get_strategy()
    compat.build_from_one_batch(model, strategy, (np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)))
    model.fit(np.zeros((8, 3)), np.zeros((8, 2)), epochs=1, verbose=0)
    with pytest.raises(CompatError, match="building a model"):
        compat.build_from_one_batch(types.SimpleNamespace(), strategy, (None, None))


def test_backup_and_restore_internals(tmp_path):
    from suite.callbacks import AtomicBackupAndRestore

    cb = AtomicBackupAndRestore(str(tmp_path / "backup"))
    weights, metadata = compat.backup_internals(cb)
    assert str(weights).startswith(str(tmp_path)) and str(metadata).startswith(str(tmp_path))
    assert set(compat.backup_position(cb)) == {"epoch", "batch"}
    with pytest.raises(CompatError, match="atomic epoch backups"):
        compat.backup_internals(keras.callbacks.Callback())


def test_tflite_internals_and_freezing(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
    def f(x):
        return {"y": tf.nn.relu(x * 2.0)}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    compat.set_per_channel_quantization(conv, False)
    assert conv._experimental_disable_per_channel is True
    from ai_edge_litert.interpreter import Interpreter

    names = compat.tflite_op_output_names(Interpreter(model_content=conv.convert()))
    assert names and all(isinstance(n, str) for n in names)
    v = tf.Variable([[1.0, 2.0]])

    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
    def g(x):
        return x + v

    frozen = compat.freeze(g.get_concrete_function())
    assert not [t for t in frozen.inputs if t.dtype == tf.resource]  # the variable is now a constant
    with pytest.raises(CompatError, match="per-tensor int8"):
        compat.set_per_channel_quantization(types.SimpleNamespace(), True)


def test_apptest_opens_a_navigation_function_page(tmp_path):
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "nav.py"
    script.write_text(
        "import streamlit as st\n"
        "def first():\n    st.write('first page')\n"
        "def second():\n    st.write('second page')\n"
        "st.navigation([st.Page(first, url_path='first'), st.Page(second, url_path='second')]).run()\n")
    at = AppTest.from_file(str(script)).run()
    assert [m.value for m in at.markdown] == ["first page"]
    compat.apptest_open_page(at, "second")
    assert [m.value for m in at.markdown] == ["second page"]
    with pytest.raises(CompatError, match="opening an st.navigation function page"):
        compat.apptest_open_page(types.SimpleNamespace(), "second")
