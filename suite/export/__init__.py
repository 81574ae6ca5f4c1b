"""Export a run's model to ``.keras``, SavedModel, TFLite/LiteRT and ONNX, each verified against Keras.

``export_run(run, formats="all", quantize="none", examples=200)`` writes ``<run>/exports/<format>/`` with the
artifact, ``labels.txt`` (and any vocabulary lists in the run's meta), ``meta.json``, the model card
``README.md`` and ``report.json``. Each format is built in a temporary folder beside its target and renamed
into place only once it is written and verified, so a failure leaves the previous export untouched.
See ``docs/EXPORT.md``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from suite import atomic
from suite.errors import ExportError, SuiteError, one_line
from suite.export.formats import BUILDERS, FORMATS, QUANTIZE_MODES, dir_size, load_runner
from suite.export.signatures import default_serving_signatures, input_specs, probabilities_function
from suite.export.verify import Held, keras_reference, to_feed, verify_keras_fresh, verify_runner
from suite.outputs import TEXT

__all__ = ["FORMATS", "QUANTIZE_MODES", "export_run", "parse_formats", "default_serving_signatures",
           "input_specs", "probabilities_function", "read_reports"]

# The format that can carry a model when another cannot.
FALLBACK = {"keras": "saved_model", "saved_model": "keras", "tflite": "saved_model", "onnx": "saved_model"}
CALIBRATION_EXAMPLES = 200
EXPORTABLE_STATUSES = ("completed", "stopped", "interrupted")
_UNSET = object()


def parse_formats(formats: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"``, one name, a comma-separated list or a list -> known format names in canonical order."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = [str(f).strip().lower() for f in items if str(f).strip()]
    if not wanted:
        raise ExportError(f"no export format given; choose from {', '.join(FORMATS)} or all")
    if "all" in wanted:
        return list(FORMATS)
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)} or all")
    return [f for f in FORMATS if f in wanted]


def read_reports(run_ref) -> dict[str, dict]:
    """The ``report.json`` of every export already written for a run (for the app)."""
    from suite.runstore import RunStore

    run = RunStore().get(run_ref)
    out = {}
    for fmt in FORMATS:
        rep = atomic.read_json(run.exports_dir / fmt / "report.json")
        if rep:
            out[fmt] = rep
    return out


def export_run(run_ref, formats: str | list[str] = "all", quantize: str = "none", examples: int = 200,
               progress: Callable[[str], Any] | None = None) -> dict[str, dict]:
    """Export and verify a run's model in each requested format; return one report per format."""
    from suite.runstore import RunStore

    say = progress or (lambda text: None)
    fmts = parse_formats(formats)
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZE_MODES)}")
    try:
        run = RunStore().get(run_ref)
        task = run.task()
    except SuiteError as err:
        raise ExportError(str(err)) from None
    _check_run(run)
    exports = run.exports_dir
    _check_writable(exports)
    meta = run.meta
    if not meta:
        raise ExportError(f"run {run.name!r} has no meta.json; it did not finish setting up")
    try:
        model = run.load_model()
    except SuiteError as err:
        raise ExportError(str(err)) from None
    except Exception as err:
        raise ExportError(f"run {run.name!r}: model.keras does not load: {one_line(err)}") from None

    specs = input_specs(model)
    say(f"loading held-out examples from {run.info.get('data', '?')}")
    held, calibration, data_note = _held_out(task, run, meta, specs, max(1, int(examples)),
                                             need_calibration="tflite" in fmts and quantize == "int8")
    keras_reference(task, model, meta, held)  # the model as it is served: what every file is checked against
    numeric = _UNSET  # its float32 twin, built once, for the formats that trace the model

    def numeric_model():
        nonlocal numeric
        if numeric is _UNSET:
            from suite.export.precision import float32_twin

            numeric = float32_twin(model)
        return numeric

    limits = dict(task.export_limits() or {})
    reports: dict[str, dict] = {}
    signatures = None
    portable: Any = _UNSET  # task.portable_graph(), computed once, when a numeric format is asked for
    for fmt in fmts:
        fmt_quant = quantize if fmt == "tflite" else "none"
        base = {"format": fmt, "task": task.name, "run": run.name, "quantize": fmt_quant}
        if fmt in limits:
            reports[fmt] = {**base, "supported": False, "reason": _with_fallback(limits[fmt], fmt)}
            say(f"{fmt}: not exported: {reports[fmt]['reason']}")
            continue
        say(f"{fmt}: building" + (f" ({fmt_quant})" if fmt_quant != "none" else ""))
        try:
            traced = model if fmt == "keras" else numeric_model()
            if signatures is None and fmt in ("saved_model", "tflite", "onnx"):
                signatures = task.serving_signatures(traced, meta)
            graph = carried = None
            if fmt in ("tflite", "onnx"):
                if portable is _UNSET:
                    portable = task.portable_graph(traced, meta)
                graph = portable
                carried = graph.for_format(fmt) if graph else _carried(task, traced, signatures)
        except Exception as err:
            reports[fmt] = {**base, "supported": False,
                            "reason": f"{fmt}: no serving signature: {one_line(err)}; use keras"}
            continue
        note = data_note
        if traced is not model:
            note = "; ".join(filter(None, [data_note, "computed in float32: the model was trained in mixed "
                                           "precision, whose bfloat16/float16 ops LiteRT and ONNX runtimes lack"]))
        reports[fmt] = _export_one(fmt, run, task, traced, meta, held, base, signatures=signatures,
                                   carried=carried, quantize=fmt_quant, calibration=calibration,
                                   data_note=note, other_quantize=quantize, say=say, portable=graph)
    return reports


def _check_run(run) -> None:
    status = run.status
    if status == "diverged":
        raise ExportError(f"run {run.name!r} diverged ({run.info.get('error') or 'non-finite loss'}); "
                          "there is no usable model to export")
    if status == "running":
        raise ExportError(f"run {run.name!r} is still training; export it once it has finished")
    if not run.has_model():
        raise ExportError(f"run {run.name!r} has no model.keras (status: {status}); train it to completion first")
    if status not in EXPORTABLE_STATUSES:
        raise ExportError(f"run {run.name!r} is {status} ({run.info.get('error') or 'no reason recorded'}); "
                          "only a finished run can be exported")


def _check_writable(exports: Path) -> None:
    try:
        exports.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=exports)
        os.rmdir(probe)
    except OSError as err:
        raise ExportError(f"cannot write exports to {exports}: {err.strerror or err}") from None


def _with_fallback(reason: str, fmt: str) -> str:
    line = " ".join(str(reason).split())
    return line if "use " in line else f"{line}; use {FALLBACK[fmt]}"


def _short(err: BaseException, limit: int = 200) -> str:
    """One short line for a converter or runtime error (their messages run to pages of MLIR)."""
    text = str(err)
    select = re.search(r"TF Select ops: ([^\n]+)", text)
    if select:
        return f"needs TensorFlow ops TFLite lacks ({select.group(1).strip()[:limit]})"
    if "Flex delegate" in text or "Select TensorFlow op" in text:
        return "uses TensorFlow (Flex) ops, and the LiteRT interpreter here has no Flex delegate to run them"
    line = one_line(err)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _fallback(fmt: str, quantize: str, err: BaseException) -> str:
    if fmt == "tflite" and quantize == "int8":
        return "--quantize dynamic (int8 calibration must run every op) or saved_model"
    return FALLBACK[fmt]


def _carried(task, model, signatures):
    """The function TFLite and ONNX carry: raw inputs -> probabilities, or the serving function for text."""
    if task.output_kind == "classes":
        if signatures and "probabilities" in signatures:
            return signatures["probabilities"]
        return probabilities_function(model)
    if not signatures or "serving_default" not in signatures:
        raise ExportError("serving_signatures() returned no 'serving_default'")
    return signatures["serving_default"]


def _held_out(task, run, meta, specs, n: int, *, need_calibration: bool):
    """First ``n`` test examples (val, then train, when absent), and a calibration generator from train."""
    from suite.data import parse_source

    feeds, labels, split, note = [], [], "", ""
    train = None
    try:
        config = task.make_config(run.config)
        bundle = task.load_data(parse_source(run.info.get("data", "sample")), config)
        train = bundle.train
        for name in ("test", "val", "train"):
            ds = getattr(bundle, name)
            if ds is not None:
                split = name
                for x, y in ds.take(n):
                    feeds.append(to_feed(x, specs))
                    labels.append(_label(y))
                if feeds:
                    break
    except SuiteError as err:
        note = f"data source unavailable ({err}); verified on the plugin's example inputs"
    if not feeds:
        for ex in task.examples(meta)[:n]:
            feeds.append(to_feed(task.decode_input(ex.value, meta), specs))
            labels.append(meta["class_names"].index(ex.expected) if ex.expected in meta.get("class_names", [])
                          else None)
        split = "examples"
        if any(lab is None for lab in labels):
            labels = [None] * len(labels)
    if not feeds:
        raise ExportError(f"run {run.name!r}: no held-out examples to verify the export on")
    calibration = None
    if need_calibration:
        calib_feeds = []
        if train is not None:
            calib_feeds = [to_feed(x, specs) for x, _ in train.take(CALIBRATION_EXAMPLES)]
        if not calib_feeds:
            calib_feeds = feeds
            note = (note + "; " if note else "") + "int8 calibrated on the verification examples"

        def calibration():
            for feed in calib_feeds:
                yield list(feed.values())

    return Held(names=[s.name for s in specs], feeds=feeds, labels=labels, split=split), calibration, note


def _label(y):
    arr = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
    if arr.dtype.kind in "SUO":
        return arr.reshape(-1)[0] if arr.size else b""
    return int(arr.reshape(-1)[0]) if arr.size else None


def _encoded(calibration, names: list[str], portable):
    """The calibration generator with each example turned into the portable graph's inputs."""
    if calibration is None or portable is None:
        return calibration

    def encoded():
        for args in calibration():
            yield list(portable.encode(dict(zip(names, args, strict=True))).values())

    return encoded


def _export_one(fmt, run, task, model, meta, held, base, *, signatures, carried, quantize, calibration,
                data_note, other_quantize, say, portable=None) -> dict:
    exports = run.exports_dir
    final = exports / fmt
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fmt}-", dir=exports))
    except OSError as err:
        raise ExportError(f"cannot write exports to {exports}: {err.strerror or err}") from None
    try:
        try:
            path, notes = BUILDERS[fmt](model, tmp, signatures=signatures, carried=carried, quantize=quantize,
                                        calibration=_encoded(calibration, held.names, portable))
        except (SuiteError, OSError):
            raise
        except Exception as err:  # converters raise many types; the reason line carries the message
            reason = f"{fmt} conversion failed: {_short(err)}; use {_fallback(fmt, quantize, err)}"
            say(f"{fmt}: not exported: {reason}")
            return {**base, "supported": False, "reason": reason}
        if portable is not None:
            notes.insert(0, portable.note)
        if other_quantize != "none" and fmt != "tflite":
            notes.append(f"quantization {other_quantize!r} applies to tflite only; this export is float")
        if data_note:
            notes.append(data_note)
        say(f"{fmt}: verifying on {len(held.feeds)} {held.split} examples")
        try:
            if fmt == "keras":
                verification = verify_keras_fresh(task, path, held)
            else:
                output_key = "probabilities" if task.output_kind == "classes" else TEXT
                runner = load_runner(fmt, path, output_key=output_key)
                if portable is not None:  # the same raw examples, encoded as a device app would
                    runner = _through(portable.encode, runner)
                verification = verify_runner(task, runner, held)
        except Exception as err:
            short = _short(err).replace(f"{tmp}{os.sep}", "")
            reason = f"{fmt} was written but cannot run here: {short}; use {FALLBACK[fmt]}"
            say(f"{fmt}: not exported: {reason}")
            return {**base, "supported": False, "reason": reason}
        _write_side_files(tmp, run, task, meta)
        report = {**base, "supported": True, "path": str(final / path.name), "artifact": path.name,
                  "size_bytes": dir_size(path), "notes": notes, "verification": verification,
                  "files": sorted(p.name for p in tmp.iterdir() if not p.name.startswith(".")) + ["report.json"]}
        atomic.write_json(tmp / "report.json", report)
        _install(tmp, final)
        return report
    except OSError as err:
        raise ExportError(f"could not write the {fmt} export in {exports}: {err.strerror or err}; "
                          "any previous export of this format is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _through(encode, runner):
    def run_encoded(feed):
        return runner(encode(feed))

    return run_encoded


def _write_side_files(folder: Path, run, task, meta: dict) -> None:
    """labels.txt, vocabulary lists, meta.json and the model card beside the artifact."""
    if meta.get("class_names"):
        atomic.write_text(folder / "labels.txt", "\n".join(str(c) for c in meta["class_names"]) + "\n")
    for key, value in meta.items():
        if "vocab" in key.lower() and isinstance(value, list) and all(isinstance(v, str) for v in value):
            atomic.write_text(folder / f"{key}.txt", "\n".join(value) + "\n")
    atomic.write_json(folder / "meta.json", meta)
    card = run.file("README.md")
    if card.is_file():
        shutil.copyfile(card, folder / "README.md")
    else:
        from suite.modelcard import render_model_card

        atomic.write_text(folder / "README.md", render_model_card(run, task))


def _install(tmp: Path, final: Path) -> None:
    """Swap the finished temp folder into place; on failure the previous export is put back."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        fd = os.open(final.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

