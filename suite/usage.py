"""Copy-paste code that loads each exported file of a run and predicts one input ("Use this model").

Each snippet stands alone: it names the real file, reads ``INPUT`` (a path for images and audio, a string for
text and table rows) the way the export expects it, and prints ``label score`` for classifiers (the outputs
otherwise). The shared plugin tests run every snippet against a real export (suite/testing.py), so they cannot
drift from what the exports take.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE_INPUTS = ("image", "audio")  # INPUT is a path; other kinds take the text itself
FORMATS = ("python", "saved_model", "tflite", "onnx")


def snippets(run, example: str | None = None) -> dict[str, str]:
    """``{"python": ..., "saved_model": ..., "tflite": ..., "onnx": ...}`` for the formats this run has
    exported and verified (``python`` always: the run's own ``model.keras`` through the suite)."""
    task = run.task()
    meta = run.meta
    kind = task.input_kind
    given = example if example is not None else _default_input(task, meta)
    head = f"INPUT = {given!r}  # {'a file path' if kind in FILE_INPUTS else 'the input itself'}\n"
    out = {"python": head + _suite(run, kind)}
    for fmt, build in (("saved_model", _saved_model), ("tflite", _tflite), ("onnx", _onnx)):
        report = _report(run, fmt)
        if report and report.get("supported"):
            code = build(report, kind, meta, task.output_kind)
            if code:
                out[fmt] = head + code
    return out


def _default_input(task, meta: dict) -> str:
    if task.input_kind in FILE_INPUTS:
        return "my_photo.jpg" if task.input_kind == "image" else "my_recording.wav"
    try:
        first = task.examples(meta)[0].value
    except Exception:  # noqa: BLE001 - a placeholder is as good for a snippet
        first = None
    return first if isinstance(first, str) else "your text here"


def _report(run, fmt: str) -> dict | None:
    path = run.exports_dir / fmt / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _suite(run, kind: str) -> str:
    read = "Path(INPUT).read_bytes()" if kind in FILE_INPUTS else "INPUT"
    return (
        "from pathlib import Path\n\n"
        "from suite.predictor import Predictor\n\n"
        f"predictor = Predictor({str(Path(run.path).resolve())!r})  # loads model.keras with safe_mode=True\n"
        f"result = predictor.predict_one({read})\n"
        "print(result.get('label', result), result.get('score', ''))\n"
    )


def _feed(kind: str, meta: dict, *, portable: bool) -> str | None:
    """Python lines that turn INPUT into ``x``, the array the exported graph takes."""
    if kind == "image":
        mode = "L" if int(meta.get("channels", 3)) == 1 else "RGB"
        extra = "[..., None]" if mode == "L" else ""
        return ("from PIL import Image\n"
                f"x = np.asarray(Image.open(INPUT).convert({mode!r}), np.uint8){extra}[None]  # any size: resized inside\n")
    if kind == "audio":
        rate = int(meta.get("sample_rate", 16000))
        n = int(meta.get("clip_samples", rate))
        return ("import soundfile\nimport soxr\n"
                "wave, rate = soundfile.read(INPUT, dtype='float32', always_2d=True)\n"
                f"wave = soxr.resample(wave.mean(axis=1), rate, {rate}) if rate != {rate} else wave.mean(axis=1)\n"
                f"x = np.zeros((1, {n}), np.float32)  # mono, {rate} Hz, {n / rate:g} s: cropped or padded\n"
                f"x[0, :min({n}, len(wave))] = wave[:{n}]\n")
    if kind == "table":
        return "x = np.array([[float(v) for v in INPUT.split(',')]], np.float32)\n"
    if kind == "text":
        if portable:
            return "x = np.frombuffer(INPUT.encode('utf-8'), np.uint8)[None]  # the text's UTF-8 bytes\n"
        return "x = tf.constant([INPUT])\n"
    return None


def _show(output_kind: str, labels_dir: str) -> str:
    if output_kind != "classes":
        return "print(out)\n"
    return (f"labels = Path({labels_dir!r}, 'labels.txt').read_text().splitlines()\n"
            "best = int(np.argmax(probabilities))\n"
            "print(labels[best], float(probabilities[best]))\n")


def _saved_model(report: dict, kind: str, meta: dict, output_kind: str) -> str | None:
    path = report["path"]
    signatures = " ".join(report.get("notes") or [])
    if kind == "image" and "image_bytes" in signatures:  # encoded JPEG/PNG in, as a server receives it
        feed, name = "x = tf.constant(Path(INPUT).read_bytes())  # one file's bytes\n", "image_bytes"
    else:
        feed, name = _feed(kind, meta, portable=False), "serving_default"
        if feed is None:
            return None
    ops = ("try:\n    import tensorflow_text  # noqa: F401  registers the text ops some tokenizers leave in the graph\n"
           "except ImportError:\n    pass\n") if kind == "text" else ""
    lines = ("from pathlib import Path\n\nimport numpy as np\nimport tensorflow as tf\n\n" + ops +
             f"serve = tf.saved_model.load({path!r}).signatures[{name!r}]\n"
             + feed
             + "(arg,) = serve.structured_input_signature[1]  # the signature's one input name\n"
             "out = {k: v.numpy() for k, v in serve(**{arg: x}).items()}\n")
    if output_kind == "classes":
        lines += "probabilities = out['probabilities'][0]\n"
    else:
        lines += "out = {k: v[0].decode() if v.dtype == object else v[0].tolist() for k, v in out.items()}\n"
    return lines + _show(output_kind, str(Path(path).parent))


# How each portable runtime loads its file and computes ``probabilities`` from ``x``.
_RUNTIMES = {
    "tflite": ("from ai_edge_litert.interpreter import Interpreter",
               "runner = Interpreter(model_path={path!r}).get_signature_runner()",
               "(arg,) = runner.get_input_details()  # the signature's one input name\n"
               "probabilities = runner(**{{arg: x}})['probabilities'][0]"),
    "onnx": ("import onnxruntime",
             "session = onnxruntime.InferenceSession({path!r})",
             "(probabilities,) = session.run(['probabilities'], {{session.get_inputs()[0].name: x}})\n"
             "probabilities = probabilities[0]"),
}


def _portable(fmt: str):
    def build(report: dict, kind: str, meta: dict, output_kind: str) -> str | None:
        feed = _feed(kind, meta, portable=True)
        if feed is None or output_kind != "classes":
            return None
        path = report["path"]
        imports, load, run = _RUNTIMES[fmt]
        return (f"from pathlib import Path\n\nimport numpy as np\n{imports}\n\n{load.format(path=path)}\n"
                + feed + run.format() + "\n" + _show(output_kind, str(Path(path).parent)))

    return build


_tflite, _onnx = _portable("tflite"), _portable("onnx")
