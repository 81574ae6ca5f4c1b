"""Serving functions built from a model's raw inputs: what the SavedModel serves and what TFLite/ONNX carry.

The default serving signature of a classification model takes the model's raw input (pixels, a string, a
waveform, a feature row) and returns ``probabilities``, ``label`` (the class name) and ``score``. Text tasks
whose model already returns strings get those passed through as ``text`` (``suite.outputs``); any other text task must
override :meth:`suite.task.Task.serving_signatures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from suite.errors import ExportError
from suite.outputs import TEXT


@dataclass
class PortableGraph:
    """A model as a function of numeric inputs, for runtimes without string ops (LiteRT builtins, ONNX).

    ``function``: a ``tf.function`` with an ``input_signature`` of numeric tensors, returning
    ``{"probabilities": ...}``. ``encode``: one raw feed ``{input_name: batch-of-one array}`` to the
    function's feed (what a device app does before calling the file). ``note``: one line for the report
    naming the inputs and how to make them. ``onnx_function``: the same computation for ONNX where its
    converter needs another form (e.g. recurrent loops unrolled); ``function`` when None.
    """

    function: Any
    encode: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    note: str
    onnx_function: Any = None

    def for_format(self, fmt: str):
        return self.onnx_function if fmt == "onnx" and self.onnx_function is not None else self.function


def input_specs(model) -> list:
    """One ``tf.TensorSpec`` per model input, with a free batch dimension and the input's own name."""
    import tensorflow as tf

    specs = []
    for i, tensor in enumerate(model.inputs):
        name = _clean_name(getattr(tensor, "name", "") or f"input_{i}")
        shape = [None, *list(tensor.shape)[1:]]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(tensor.dtype), name=name))
    return specs


def _clean_name(name: str) -> str:
    name = name.split(":")[0].split("/")[-1]
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "input"


def _call(model, args):
    return model(args[0] if len(args) == 1 else list(args), training=False)


def probabilities_function(model):
    """Raw inputs -> ``{"probabilities": ...}``: the numeric graph carried by TFLite and ONNX."""
    import tensorflow as tf

    specs = input_specs(model)

    @tf.function(input_signature=specs)
    def probabilities(*args):
        return {"probabilities": tf.cast(_call(model, args), tf.float32)}

    return probabilities


def default_serving_signatures(task, model, meta: dict) -> dict[str, Any]:
    """``serving_default`` (and ``probabilities`` for classification) built from the model's raw inputs."""
    import tensorflow as tf

    specs = input_specs(model)
    if task.output_kind == "classes":
        class_names = tf.constant([str(c) for c in meta["class_names"]])

        @tf.function(input_signature=specs)
        def serving_default(*args):
            probs = tf.cast(_call(model, args), tf.float32)
            top = tf.argmax(probs, axis=-1)
            return {"probabilities": probs, "label": tf.gather(class_names, top),
                    "score": tf.reduce_max(probs, axis=-1)}

        return {"serving_default": serving_default, "probabilities": probabilities_function(model)}

    out = model.outputs[0] if getattr(model, "outputs", None) else None
    if out is None or str(out.dtype) != "string":
        raise ExportError(
            f"{task.name}: the model does not return strings; the plugin must override "
            "Task.serving_signatures to serve its decoding loop"
        )

    @tf.function(input_signature=specs)
    def serving_text(*args):
        return {TEXT: _call(model, args)}

    return {"serving_default": serving_text}
