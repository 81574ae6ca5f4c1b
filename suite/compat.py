"""Every use of a private Keras or TensorFlow name, each behind one small function (tests/test_compat.py).

A Keras or TensorFlow upgrade that moves one of these internals makes its function raise :class:`CompatError`
naming the internal and the installed versions, instead of failing somewhere else or, worse, silently.

Multi-worker: Keras 3.15 reduces each step's scalar logs with ``strategy.reduce("MEAN", v, axis=0)`` under a multi-worker
collective strategy, which fails on rank-0 values, and its symbolic build reduces a whole PerReplica batch.
Both are patched here, only for multi-worker runs, and only in those two places.
"""

from __future__ import annotations

from typing import Any

from suite.errors import SuiteError

_patched = False


class CompatError(SuiteError):
    """A private Keras/TensorFlow internal the suite relies on is not where the pinned versions have it."""


def _versions() -> str:
    import keras
    import tensorflow as tf

    return f"Keras {keras.__version__}, TensorFlow {tf.__version__}"


def require(obj: Any, name: str, what: str) -> Any:
    """``getattr(obj, name)``, or one clear line saying which internal moved."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise CompatError(f"{what}: {type(obj).__name__}.{name} is gone in {_versions()} (suite/compat.py needs "
                          "updating for this version)") from None


# ---- Keras --------------------------------------------------------------------------------------------------
def build_from_one_batch(model, strategy, batch) -> None:
    """Make ``model.fit`` build the model from one local ``(x, y)`` batch: Keras 3.15's symbolic build averages
    the first PerReplica batch with ``strategy.reduce``, which fails when replicas got unequal shares and under
    MultiWorkerMirroredStrategy."""
    symbolic_build = require(model, "_symbolic_build", "building a model before a distributed fit")
    require(model, "_maybe_symbolic_build", "building a model before a distributed fit")
    x, y = batch

    def build(iterator=None, data_batch=None):
        with strategy.scope():
            symbolic_build(data_batch=(x, y, None))

    model._maybe_symbolic_build = build


def backup_internals(callback) -> tuple[str, str]:
    """The weights and metadata paths of a ``keras.callbacks.BackupAndRestore`` (whose ``_save_model`` the
    atomic backup replaces), checked to exist."""
    what = "atomic epoch backups"
    return require(callback, "_weights_path", what), require(callback, "_training_metadata_path", what)


def backup_position(callback) -> dict[str, int]:
    """Epoch and batch a ``BackupAndRestore`` is at, as Keras writes them in its metadata file."""
    what = "atomic epoch backups"
    return {"epoch": require(callback, "_current_epoch", what), "batch": require(callback, "_last_batch_seen", what)}


def lookup_layer(vectorizer):
    """The ``StringLookup`` inside a ``keras.layers.TextVectorization`` (its vocabulary limit and IDF weights
    have no public accessor)."""
    return require(vectorizer, "_lookup_layer", "reading a TextVectorization vocabulary")


def idf_weights(vectorizer):
    return require(lookup_layer(vectorizer), "idf_weights_const", "reading TF-IDF weights")


# ---- TensorFlow Lite and graph freezing ---------------------------------------------------------------------
def set_per_channel_quantization(converter, per_channel: bool) -> None:
    """Per-tensor int8 weights when ``per_channel`` is False (TFLiteConverter has no public switch)."""
    require(converter, "_experimental_disable_per_channel", "per-tensor int8 quantisation")
    converter._experimental_disable_per_channel = not per_channel


def tflite_op_output_names(interpreter) -> list[str]:
    """Names of every op's output tensors in a TFLite interpreter (the public details list only the model's
    inputs and outputs)."""
    ops = require(interpreter, "_get_ops_details", "listing TFLite ops")()
    tensor = require(interpreter, "_get_tensor_details", "listing TFLite ops")
    return [tensor(idx, 0)["name"] for op in ops for idx in op["outputs"]]


def freeze(concrete_function):
    """A concrete function with its variables folded into constants (what tf2onnx converts)."""
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:
        raise CompatError(f"freezing a graph for ONNX: tensorflow.python.framework.convert_to_constants is gone in "
                          f"{_versions()} (suite/compat.py needs updating for this version)") from None
    return convert_variables_to_constants_v2(concrete_function)


def patch_keras_for_multi_worker() -> None:
    global _patched
    if _patched:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if tf_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            def _reduce(v):
                inner = v.values[0] if hasattr(v, "values") else v
                rank = getattr(getattr(inner, "shape", None), "rank", 0) or 0
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tree.map_structure(_reduce, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _patched = True


# ---- Streamlit ------------------------------------------------------------------------------------------------
def apptest_open_page(at, url_path: str):
    """Put a ``streamlit.testing.v1.AppTest`` on the ``st.navigation`` page served at ``/url_path`` and run it.
    AppTest's public ``switch_page`` takes page files only, not the function pages the app builds from the
    registry, so this sets the page hash a browser's URL would give."""
    from streamlit.util import calc_hash

    require(at, "_page_hash", "opening an st.navigation function page in AppTest")
    at._page_hash = calc_hash(url_path)
    return at.run()
