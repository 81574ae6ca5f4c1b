"""Builders of each export format, and runners that execute the written artifact itself for verification.

Every builder writes into a temporary folder (the caller renames it into place) and returns
``(artifact_path, notes)``; every runner loader returns ``fn(feed) -> np.ndarray`` for one example, where
``feed`` is ``{input_name: batch-of-one array}``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("keras", "saved_model", "tflite", "onnx")
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
FILENAMES = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}


@contextlib.contextmanager
def quiet():
    """Silence the converters' chatter (Python-level stdout/stderr and TensorFlow's deprecation log)."""
    import logging

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        tf_logger.setLevel(level)


def write_archive(model, signatures: dict[str, Any], path: Path) -> None:
    """A SavedModel holding ``signatures`` (tf.functions with input signatures) and the model's variables."""
    import keras

    if "serving_default" not in signatures:
        raise ValueError("serving_signatures() must return a 'serving_default' function")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn in signatures.items():
        archive.add_endpoint(name, fn)
    with quiet():
        archive.write_out(str(path), verbose=False)


# ---- builders ------------------------------------------------------------------------------------
def build_keras(model, folder: Path, **_) -> tuple[Path, list[str]]:
    path = folder / FILENAMES["keras"]
    model.save(path)
    return path, []


def build_saved_model(model, folder: Path, *, signatures: dict[str, Any], **_) -> tuple[Path, list[str]]:
    path = folder / FILENAMES["saved_model"]
    write_archive(model, signatures, path)
    return path, [f"signatures: {', '.join(sorted(signatures))}"]


def build_tflite(model, folder: Path, *, carried, quantize: str, calibration: Callable[[], Iterable] | None,
                 **_) -> tuple[Path, list[str]]:
    """Convert the carried function through a scratch SavedModel; SELECT_TF_OPS only when builtins fail."""
    import tensorflow as tf

    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=folder))
    notes: list[str] = []
    try:
        write_archive(model, {"serving_default": carried, "carried": carried}, scratch / "sm")
        if quantize == "int8":
            if calibration is None:
                raise ValueError("int8 needs calibration examples from the run's training split")
            op_sets = [[tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
                       [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS],
                       [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS,
                        tf.lite.OpsSet.SELECT_TF_OPS]]
        else:
            op_sets = [[tf.lite.OpsSet.TFLITE_BUILTINS],
                       [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]]
        first_error: Exception | None = None
        content = None
        for ops in op_sets:
            conv = _converter(scratch / "sm", ops, quantize, calibration)
            try:
                with quiet():
                    content = conv.convert()
            except Exception as err:  # the converter raises ConverterError and friends
                first_error = first_error or err
                continue
            names = [o.name for o in ops]
            if "SELECT_TF_OPS" in names:
                notes.append("uses SELECT_TF_OPS (TensorFlow ops via the Flex delegate): the model's raw-input "
                             "preprocessing has ops TFLite builtins lack; link tensorflow-lite-select-tf-ops")
            if quantize == "int8" and names != ["TFLITE_BUILTINS_INT8"]:
                notes.append("int8 with float fallback for ops that have no int8 kernel")
            break
        if content is None:
            raise first_error or RuntimeError("TFLite conversion failed")
        if quantize == "int8":
            content, agree = _int8_front_end_float(model, carried, content, scratch / "sm", ops, calibration,
                                                   notes)
            content = _int8_per_tensor_if_faithful(model, carried, content, agree, scratch / "sm", ops,
                                                   calibration, notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    content, stripped = strip_tensor_names(content)
    if stripped:
        notes.append(f"internal tensor names stripped ({stripped / 1024:.1f} KB); the signature keeps its input and "
                     "output names")
    path = folder / FILENAMES["tflite"]
    path.write_bytes(content)
    if quantize == "int8":
        mixed = any(n.startswith("preprocessing layers") for n in notes)
        notes.append(("int8 weights and activations after the float preprocessing" if mixed else
                      "full int8 weights and activations") + ", calibrated on training examples; float inputs "
                     "and outputs (quantize/dequantize at the edges)")
    return path, notes


def _converter(saved: Path, ops, quantize: str, calibration=None, *, per_channel: bool = True):
    """A TFLite converter of the scratch SavedModel's ``carried`` signature for one quantization mode."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["carried"])
    conv.target_spec.supported_ops = ops
    if quantize in ("float16", "dynamic", "int8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        conv.representative_dataset = calibration
        from suite.compat import set_per_channel_quantization

        set_per_channel_quantization(conv, per_channel)
    return conv


def strip_tensor_names(content: bytes) -> tuple[bytes, int]:
    """Drop the TF graph's tensor names from a TFLite flatbuffer; return the new bytes and the bytes saved.

    Names are debugging text (several KB in a small model, more than its int8 zero points); the interpreter's
    signature runner addresses inputs and outputs through the SignatureDef, which is kept.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    out = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return (out, len(content) - len(out)) if len(out) < len(content) else (content, 0)


INT8_MIN_AGREEMENT = 0.98


def front_end_layers(model) -> list[str]:
    """Names of the layers before the first one with trainable weights: the in-model preprocessing."""
    names = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if layer.trainable_weights:
            break
        names.append(layer.name)
    return names


def _agreement(content: bytes, carried, feeds: list) -> float:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner("carried")
    names = [s.name for s in carried.input_signature]
    hits = []
    for args in feeds:
        ref = np.asarray(carried(*args)["probabilities"])
        out = np.asarray(runner(**dict(zip(names, args, strict=True)))["probabilities"])
        hits.append(float(np.mean(ref.argmax(-1) == out.argmax(-1))))
    return float(np.mean(hits)) if hits else 1.0


def _int8_front_end_float(model, carried, content: bytes, saved: Path, ops, calibration, notes,
                          *, per_channel: bool = True) -> tuple[bytes, float]:
    """If full int8 disagrees with the float model on calibration examples, keep the preprocessing float.

    Signal-processing front ends (log-mel spectrograms, per-example normalisation) span dynamic ranges
    that int8 cannot hold; quantizing only the network after them keeps int8 weights where the size is.
    Returns the chosen model and its top-1 agreement with the float model on the calibration examples.
    """
    import re

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    feeds = list(calibration())[:100]
    full = _agreement(content, carried, feeds)
    layers = front_end_layers(model)
    if full >= INT8_MIN_AGREEMENT or not layers:
        notes.append(f"int8 agrees with the float model on {full:.3f} of calibration examples")
        return content, full
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["carried"])
    with quiet():
        float_content = conv.convert()
    interp = Interpreter(model_content=float_content)
    pattern = re.compile("/(" + "|".join(re.escape(n) for n in layers) + r")(_\d+)?/")
    deny = []
    from suite.compat import tflite_op_output_names

    for name in tflite_op_output_names(interp):
        if pattern.search("/" + name):
            deny.append(name)
    if not deny:
        return content, full

    def make():
        mixed_ops = [o for o in ops if o.name != "TFLITE_BUILTINS_INT8"] + [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        return _converter(saved, mixed_ops, "int8", calibration, per_channel=per_channel)

    with quiet():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=make(), debug_dataset=calibration,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny))
        mixed = debugger.get_nondebug_quantized_model()
    mixed_agree = _agreement(mixed, carried, feeds)
    if mixed_agree > full:
        notes.append(f"preprocessing layers ({', '.join(layers)}) kept float: full int8 agreed with the float "
                     f"model on {full:.3f} of calibration examples, this mix on {mixed_agree:.3f}")
        return mixed, mixed_agree
    notes.append(f"int8 agrees with the float model on {full:.3f} of calibration examples")
    return content, full


PER_TENSOR_MAX_LOSS = 0.005  # agreement a per-tensor int8 model may give up for its size (half a point)


def _int8_per_tensor_if_faithful(model, carried, content: bytes, agreement: float, saved: Path, ops,
                                 calibration, notes) -> bytes:
    """Use one scale per weight tensor instead of one per output channel when that costs no agreement.

    Per-channel int8 stores a float32 scale and an int64 zero point for every output channel of every
    weight and bias tensor: 12 bytes a channel, which in a small model (a 96-wide keyword spotter:
    ~20 KB beside 45 KB of weights) keeps int8 near half the float32 size. Per-tensor scales drop that,
    but can cost accuracy where channels' ranges differ widely (depthwise convolutions with folded batch
    norm), so the smaller model is kept only if its top-1 agreement with the float model on the
    calibration examples is within ``PER_TENSOR_MAX_LOSS`` of the per-channel model's.
    """
    conv = _converter(saved, ops, "int8", calibration, per_channel=False)
    trial: list[str] = []
    try:
        with quiet():
            candidate = conv.convert()
        candidate, agree = _int8_front_end_float(model, carried, candidate, saved, ops, calibration, trial,
                                                 per_channel=False)
    except Exception as err:  # a converter without per-tensor kernels for some op: keep per-channel
        notes.append(f"per-channel int8 scales (per-tensor conversion failed: {str(err).splitlines()[0][:120]})")
        return content
    if len(candidate) < len(content) and agree >= agreement - PER_TENSOR_MAX_LOSS:
        notes[:] = [n for n in notes if not n.startswith(("int8 agrees", "preprocessing layers"))] + trial
        notes.append(f"per-tensor int8 scales: {len(candidate) / 1024:.1f} KB instead of "
                     f"{len(content) / 1024:.1f} KB per-channel, calibration agreement {agree:.3f} vs {agreement:.3f}")
        return candidate
    notes.append(f"per-channel int8 scales: per-tensor ({len(candidate) / 1024:.1f} KB) agreed with the float "
                 f"model on {agree:.3f} of calibration examples, per-channel ({len(content) / 1024:.1f} KB) on "
                 f"{agreement:.3f}")
    return content


def build_onnx(model, folder: Path, *, carried, **_) -> tuple[Path, list[str]]:
    """tf2onnx on the frozen carried function (Keras' own ONNX export leaves captured constants as inputs)."""
    import tensorflow as tf
    import tf2onnx

    from suite.compat import freeze

    concrete = carried.get_concrete_function()
    frozen = freeze(concrete)
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    with quiet():
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                                  output_names=outputs, opset=17)
    # Friendly names: the signature's input names and the carried function's output key.
    want_in = [s.name for s in concrete.structured_input_signature[0]]
    out_keys = sorted(concrete.structured_outputs) if isinstance(concrete.structured_outputs, dict) else []
    _rename(proto, dict(zip(inputs, want_in, strict=False)))
    if len(out_keys) == len(outputs):
        _rename(proto, dict(zip(outputs, out_keys, strict=True)))
    path = folder / FILENAMES["onnx"]
    path.write_bytes(proto.SerializeToString())
    return path, [f"opset 17 via tf2onnx {tf2onnx.__version__}"]


def _rename(proto, mapping: dict[str, str]) -> None:
    graph = proto.graph
    for value in list(graph.input) + list(graph.output):
        if value.name in mapping:
            value.name = mapping[value.name]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]


BUILDERS = {"keras": build_keras, "saved_model": build_saved_model, "tflite": build_tflite, "onnx": build_onnx}


# ---- runners -------------------------------------------------------------------------------------
def _first(outputs: dict, key: str):
    if key in outputs:
        return outputs[key]
    return outputs[sorted(outputs)[0]]


def load_runner(fmt: str, path: Path, *, output_key: str) -> Callable[[dict], np.ndarray]:
    """A callable running the artifact at ``path`` on one feed and returning its main output as numpy."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]

        def run_saved(feed):
            out = fn(**{k: tf.constant(v) for k, v in feed.items()})
            return np.asarray(_first(out, output_key))

        run_saved.loaded = loaded  # keep the module alive
        return run_saved
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=min(2, os.cpu_count() or 1))
        runner = interp.get_signature_runner("carried")

        def run_tflite(feed):
            return np.asarray(_first(runner(**feed), output_key))

        return run_tflite
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        out_names = [o.name for o in session.get_outputs()]
        index = out_names.index(output_key) if output_key in out_names else 0

        def run_onnx(feed):
            values = list(feed.values())
            arrays = {n: (feed[n] if n in feed else values[i]) for i, n in enumerate(names)}
            return np.asarray(session.run(None, arrays)[index])

        return run_onnx
    raise ValueError(f"no runner for {fmt}")


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
