"""How the int8/float32 TFLite size ratio of the speech model depends on its size and on per-channel scales.

Each point trains the speech plugin for one epoch on 128 FSDD clips (the weights' values barely matter to the
file size), exports float32 TFLite and int8 TFLite twice through ``suite.export.export_run``: once forced to
per-channel scales, once allowed per-tensor ones. ``python -m bench.int8_size_sweep`` writes
``bench/results/int8_size_sweep.{json,md}``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import machine, md_table, save_results, shared_data

NAME = "int8_size_sweep"
POINTS = [(96, 4), (96, 8), (128, 4), (192, 4)]  # (width, depth); (96, 4) is the default


def run() -> str:
    root = shared_data("fsdd", "recordings")
    if root is None:
        return "## int8 size sweep\n\nSkipped: `../shared/data/fsdd/recordings` not found.\n"
    os.environ.setdefault("SUITE_PLUGINS", "speech_commands")
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    os.environ["SUITE_HOME"] = str(work / "runs")
    from bench.speech_commands import fsdd_files, write_manifest
    from suite.export import export_run, formats
    from suite.registry import get
    from suite.trainer import TrainOptions, train

    task = get("speech_commands")
    manifest = write_manifest(fsdd_files(root), work / "fsdd_standard.csv", "standard")
    rows, results = [], []
    for width, depth in POINTS:
        run_ = train(task, str(manifest), {"epochs": 1, "max_train_examples": 128, "width": width, "depth": depth},
                     name=f"w{width}d{depth}", options=TrainOptions(tensorboard=False))
        params = run_.load_model().count_params()
        f32 = export_run(run_, formats="tflite", quantize="none", examples=20)["tflite"]["size_bytes"]
        sizes, default_loss = {}, formats.PER_TENSOR_MAX_LOSS
        try:
            for label, loss in (("per_channel", -1.0), ("per_tensor", 1.0)):
                formats.PER_TENSOR_MAX_LOSS = loss  # -1: never per-tensor; 1: per-tensor whenever smaller
                sizes[label] = export_run(run_, formats="tflite", quantize="int8",
                                          examples=20)["tflite"]["size_bytes"]
        finally:
            formats.PER_TENSOR_MAX_LOSS = default_loss
        r = {"width": width, "depth": depth, "weights": params, "float32_bytes": f32, **sizes}
        results.append(r)
        rows.append([width, depth, f"{params:,}", f"{f32 / 1024:.1f}", f"{sizes['per_channel'] / 1024:.1f}",
                     f"{sizes['per_channel'] / f32:.3f}", f"{sizes['per_tensor'] / 1024:.1f}",
                     f"{sizes['per_tensor'] / f32:.3f}"])
    save_results(NAME, {"machine": machine(), "points": results})
    return "\n".join([
        "## int8 size sweep (speech model)", "",
        f"One epoch on 128 FSDD clips per point, exported with `suite.export.export_run` (float front end kept "
        f"where int8 disagrees, names stripped). Command: `python -m bench.int8_size_sweep`. Machine: {machine()}.",
        "", md_table(["width", "depth", "weights", "float32 KB", "int8 per-channel KB", "ratio",
                      "int8 per-tensor KB", "ratio"], rows), ""])


if __name__ == "__main__":
    from bench.common import RESULTS

    text = run()
    (RESULTS / f"{NAME}.md").write_text(text)
    print(text)
