"""The two hand-written serving fast paths, each against the general decoder on the same input, interleaved:

- image: a plain 8-bit PNG decoded by ``tf.io.decode_png`` inside the compiled forward graph
  (``Task.predict_encoded``, suite_plugins/image_classification/serving.py) against PIL in Python, then the forward;
- speech: a plain PCM WAV read with numpy (``audio._plain_wav``) against libsndfile (soundfile).

Whole ``Predictor.predict`` calls (what the CLI, the app and a server pay per input) and the decode step alone.
The models are the plugins' defaults, trained one short epoch (latency does not depend on the weights): the image
default on the built-in digits, the speech default on a tenth of FSDD's training clips.

    .venv/bin/python -m bench.run --only fast_paths
"""

from __future__ import annotations

import copy
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.common import interleaved_latency, machine, md_table, save_results, shared_data

NAME = "fast_paths"


def _image_case(home: Path, rounds: int) -> dict:
    from PIL import Image

    from suite.predictor import Predictor
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    run = train(get("image_classification"), "sample", {"epochs": 1}, name="image", store=RunStore(home),
                options=TrainOptions(tensorboard=False))
    mnist = shared_data("mnist", "mnist.npz")
    digit = np.load(mnist)["x_test"][0] if mnist else np.asarray(Image.new("L", (28, 28), 128))
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="PNG")
    png = buf.getvalue()
    fast = Predictor(run)
    slow = Predictor(run, model=fast.model)
    slow.task = copy.copy(fast.task)
    slow.task.predict_encoded = lambda forward, raw, meta: None  # the general path: PIL, then the forward
    assert fast.predict([png])[0]["label"] == slow.predict([png])[0]["label"]
    whole = interleaved_latency({"fast": (lambda: fast.predict([png]), 40), "general": (lambda: slow.predict([png]), 40)},
                                rounds)
    decode = interleaved_latency({"general": (lambda: fast.decode(png), 40)}, rounds)
    return {"input": f"a {digit.shape[1]}x{digit.shape[0]} grey PNG digit ({len(png)} bytes)",
            "model": f"{run.config.get('model')} at {run.meta.get('image_size')} px", "predict": whole,
            "decode": decode}


def _speech_case(home: Path, rounds: int) -> dict | None:
    from bench.speech_commands import fsdd_files, write_manifest
    from suite.predictor import Predictor
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train
    from suite_plugins.speech_commands import audio

    root = shared_data("fsdd", "recordings")
    if root is None:
        return None
    files = fsdd_files(root)
    home.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(files, home / "fsdd.csv", "standard", train_every=10)
    run = train(get("speech_commands"), str(manifest), {"epochs": 1, "synthetic_voices": 0}, name="speech",
                store=RunStore(home), options=TrainOptions(tensorboard=False))
    wav = files[0][0].read_bytes()
    predictor = Predictor(run)
    plain = audio._plain_wav

    def general(fn):
        audio._plain_wav = lambda raw: None  # every WAV to libsndfile
        try:
            return fn()
        finally:
            audio._plain_wav = plain

    assert predictor.predict([wav])[0]["label"] == general(lambda: predictor.predict([wav]))[0]["label"]
    rate, size = int(run.meta["sample_rate"]), int(run.meta["clip_samples"])
    whole = interleaved_latency({"fast": (lambda: predictor.predict([wav]), 40),
                                 "general": (lambda: general(lambda: predictor.predict([wav])), 40)}, rounds)
    decode = interleaved_latency({"fast": (lambda: audio.read_audio(wav), 40),
                                  "general": (lambda: general(lambda: audio.read_audio(wav)), 40)}, rounds)
    return {"input": f"an FSDD clip ({files[0][0].name}, {len(wav)} bytes, 8 kHz int16 WAV, resampled to {rate} Hz)",
            "model": f"the default CNN (width {run.config.get('width')}, depth {run.config.get('depth')}), {size} samples in",
            "predict": whole, "read": decode}


def run(quick: bool) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rounds = 3 if quick else 10
    home = Path(tempfile.mkdtemp(prefix="bench-fast-paths-"))
    try:
        results = {"quick": quick, "machine": machine(), "rounds": rounds, "load": os.getloadavg(),
                   "image": _image_case(home / "image", rounds), "speech": _speech_case(home / "speech", rounds)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    save_results(NAME + ("_quick" if quick else ""), results)
    return section(results)


def _ms(d: dict) -> str:
    return f"{d['p50'] * 1e3:.3f}"


def section(r: dict) -> str:
    rows = []
    img = r["image"]
    rows.append(["image: PNG decoded in the graph", img["input"], _ms(img["predict"]["fast"]),
                 _ms(img["predict"]["general"]), f"{img['predict']['general']['p50'] / img['predict']['fast']['p50']:.2f}x"])
    speech = r.get("speech")
    if speech:
        rows.append(["speech: plain WAV read by numpy", speech["input"], _ms(speech["predict"]["fast"]),
                     _ms(speech["predict"]["general"]),
                     f"{speech['predict']['general']['p50'] / speech['predict']['fast']['p50']:.2f}x"])
    lines = [
        "## Serving fast paths",
        "",
        "Each hand-written fast path against the general decoder on the same input: p50 ms of a whole "
        "`Predictor.predict([raw])` call, the two paths interleaved call by call "
        f"({r['rounds']} rounds of 40 calls each; load average {r['load'][0]:.2f} at the start; "
        "`python -m bench.run --only fast_paths`).",
        "",
        md_table(["fast path", "input", "fast p50 ms", "general p50 ms", "general / fast"], rows),
        "",
        f"- image model: {img['model']}; PIL decode alone {_ms(img['decode']['general'])} ms.",
    ]
    if speech:
        lines.append(f"- speech model: {speech['model']}; reading the WAV alone: numpy "
                     f"{_ms(speech['read']['fast'])} ms, libsndfile {_ms(speech['read']['general'])} ms.")
    else:
        lines.append("- speech: skipped, `fsdd/recordings` not found under SUITE_SHARED_DATA.")
    lines += ["", f"Machine: {r['machine']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=False))
