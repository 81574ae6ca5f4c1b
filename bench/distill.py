"""Distillation, measured: each student beside the same student architecture trained without a teacher.

- sentiment (SST-2): the default ensemble teaches the ``cnn`` student;
- image (CIFAR-10): the default (cnn_fast at the width its plan picks) teaches the widest cnn_fast with at most
  a quarter of its multiply-adds;
- translation (spa-eng): the default Transformer (2+2 layers) teaches the 1+1-layer ``small`` student at the
  sequence level (the teacher's decoded outputs for every training source); BLEU on the first 2,000 test pairs
  and decoding speed. Its time budgets come from ``BENCH_DISTILL_TRANSLATION`` ("teacher_min,student_min,pairs",
  default "12,8,0": the teacher trains 12 minutes, not the default's 60, on all pairs, 0 = all).

The three runs of a part share data, seed, split and config (``suite.distill.student_config``), so the teacher
is the only difference between the two students. Each run is scored on its whole test split; latency is one
input per call (``Predictor.predict`` and the int8 TFLite file through the LiteRT interpreter).
``python -m bench.run --only distill [--quick]``; ``BENCH_DISTILL=sentiment`` runs one part and keeps the other's
last figures.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, interleaved_latency, machine, md_table, save_results, shared_data

NAME = "distill"
SENTENCE = "A warm, funny and beautifully acted film, though the ending drags a little."


def _sentiment_data() -> str | None:
    folder = shared_data("sst2")
    return str(folder) if folder and (folder / "train.tsv").is_file() else None


def _cifar_data() -> str | None:
    folder = shared_data("cifar10")
    return str(folder) if folder and (folder / "train").is_dir() else None


def _sentence(_data: str):
    return SENTENCE


def _photo(data: str):
    return next(iter(sorted((Path(data) / "test").rglob("*.jpg")))).read_bytes()


def _quarter_macs(teacher) -> dict:
    """The widest cnn_fast (an even width) with at most a quarter of the teacher's multiply-adds."""
    from suite_plugins.image_classification.model import fast_forward_macs

    size, channels = int(teacher.meta["image_size"]), int(teacher.meta["channels"])
    budget = fast_forward_macs(int(teacher.config["width"]), size, channels) / 4
    fitting = [w for w in range(2, int(teacher.config["width"]), 2) if fast_forward_macs(w, size, channels) <= budget]
    return {"model": "cnn_fast", "width": max(fitting, default=2)}


# part -> (task, data, teacher overrides quick/full, student name, student overrides from the teacher, one input)
PARTS = {
    "sentiment": ("sentiment", _sentiment_data, ({"max_train_examples": 8000, "epochs": 1}, {}), "cnn",
                  lambda teacher: {}, _sentence),
    "image": ("image_classification", _cifar_data, ({"max_train_examples": 5000, "time_budget_minutes": 1.0}, {}),
              None, _quarter_macs, _photo),
}


def _row(run, seconds: float) -> dict:
    from suite.runstore import Run

    run = Run(run.path)
    test = run.metrics.get("test") or {}
    model = run.load_model()
    row = {"run": run.name, "model": run.config.get("model"), "test_accuracy": test.get("accuracy"),
           "test_examples": (run.info.get("counts") or {}).get("test"), "wall_seconds": round(seconds, 1),
           "train_seconds": run.info.get("train_seconds"),
           "epochs": len(run.history()), "params": int(model.count_params()),
           "serving_latency_ms_p50": run.metrics.get("serving_latency_ms_p50")}
    if "width" in run.config and run.config.get("model") == "cnn_fast":
        from suite_plugins.image_classification.model import fast_forward_macs

        row["width"] = int(run.config["width"])
        row["macs"] = fast_forward_macs(row["width"], int(run.meta["image_size"]), int(run.meta["channels"]))
    return row


def _int8(run, examples: int) -> dict:
    from suite.export import export_run

    rep = export_run(run.name, formats="tflite", quantize="int8", examples=examples)["tflite"]
    if not rep.get("supported"):
        return {"supported": False, "reason": rep.get("reason")}
    ver = rep["verification"]
    return {"supported": True, "builtin_only": not any("SELECT_TF_OPS" in n for n in rep["notes"]),
            "size_bytes": rep["size_bytes"], "accuracy": ver.get("metric"), "keras_accuracy": ver.get("keras_metric"),
            "latency_ms_p50": ver.get("latency_ms_p50"), "keras_latency_ms_p50": ver.get("keras_latency_ms_p50"),
            "examples": examples}


def _timed(fn):
    t = time.perf_counter()
    run = fn()
    if run.status != "completed":
        raise RuntimeError(f"run {run.name} ended {run.status}: {run.info.get('error')}")
    return run, time.perf_counter() - t


def part(key: str, quick: bool) -> dict:
    from suite.distill import distill, student_config
    from suite.predictor import Predictor
    from suite.registry import get
    from suite.trainer import TrainOptions, train

    task_name, data_fn, teacher_over, student_name, student_over, one_input = PARTS[key]
    data = data_fn()
    if data is None:
        return {"skipped": "shared data not found (set SUITE_SHARED_DATA)"}
    task = get(task_name)
    options = TrainOptions(tensorboard=False)
    teacher, t_s = _timed(lambda: train(task, data, teacher_over[0 if quick else 1], name=f"{key}-teacher",
                                        options=options))
    over = student_over(teacher)
    config = student_config(teacher, task, student_name, over)
    alone, a_s = _timed(lambda: train(task, data, config, name=f"{key}-student-alone", options=options))
    student, d_s = _timed(lambda: distill(teacher.name, over, student=student_name, name=f"{key}-student-distilled",
                                          options=options))
    rows = {"teacher": _row(teacher, t_s), "alone": _row(alone, a_s), "distilled": _row(student, d_s)}
    raw = one_input(data)
    predictors = {name: Predictor(run) for name, run in (("teacher", teacher), ("distilled", student))}
    lat = interleaved_latency({name: (lambda p=p: p.predict([raw]), 20 if quick else 50)
                               for name, p in predictors.items()}, 3 if quick else 8)
    n = 200 if quick else 1000
    return {"data": data, "student_config": over, "student_name": student_name, "runs": rows,
            "predict_ms_p50": {k: 1e3 * v["p50"] for k, v in lat.items()},
            "tflite_int8": {"teacher": _int8(teacher, n), "distilled": _int8(student, n)},
            "distill": student.info.get("distill")}


def _translation_data() -> str | None:
    folder = shared_data("spa-eng")
    return str(folder) if folder and (folder / "train.tsv").is_file() else None


def _decode_rate(predictor, sentences: list[str], batch: int = 50) -> float:
    """Sentences per second through ``Predictor.predict`` in batches (after one warm-up batch)."""
    predictor.predict(sentences[:batch])
    t = time.perf_counter()
    for i in range(0, len(sentences), batch):
        predictor.predict(sentences[i:i + batch])
    return len(sentences) / (time.perf_counter() - t)


def translation_part(quick: bool) -> dict:
    """Teacher, the 1+1 student alone and the student distilled at the sequence level, side by side."""
    from suite.distill import TARGETS_FILE, distill, student_config
    from suite.predictor import Predictor
    from suite.registry import get
    from suite.trainer import TrainOptions, train
    from suite_plugins.translation.task import read_pairs

    data = _translation_data()
    if data is None:
        return {"skipped": "spa-eng not found (set SUITE_SHARED_DATA)"}
    spec = os.environ.get("BENCH_DISTILL_TRANSLATION", "1,1,3000" if quick else "12,8,0")
    teacher_min, student_min, pairs = (float(v) for v in spec.split(","))
    task = get("translation")
    options = TrainOptions(tensorboard=False)
    common = {"epochs": 40, **({"max_train_examples": int(pairs)} if pairs else {})}
    teacher, t_s = _timed(lambda: train(task, data, {**common, "time_budget_minutes": teacher_min},
                                        name="translation-teacher", options=options))
    over = {"time_budget_minutes": student_min}
    config = student_config(teacher, task, "small", over)
    alone, a_s = _timed(lambda: train(task, data, config, name="translation-student-alone", options=options))
    t0 = time.perf_counter()
    student, d_s = _timed(lambda: distill(teacher.name, over, student="small", name="translation-student-distilled",
                                          options=options))
    sentences = [src for src, _ in read_pairs(Path(data) / "test.tsv")][: 200 if quick else 1000]
    rates = {name: _decode_rate(Predictor(run), sentences)
             for name, run in (("teacher", teacher), ("alone", alone), ("distilled", student))}
    rows = {}
    for name, run, seconds in (("teacher", teacher, t_s), ("alone", alone, a_s), ("distilled", student, d_s)):
        test = run.metrics.get("test") or {}
        rows[name] = {"run": run.name, "bleu": test.get("bleu"), "chrf": test.get("chrf"),
                      "layers": f"{run.config['encoder_layers']}+{run.config['decoder_layers']}",
                      "epochs": len(run.history()), "train_seconds": run.info.get("train_seconds"),
                      "wall_seconds": round(seconds, 1), "decode_sent_per_s": rates[name]}
    with open(student.file(TARGETS_FILE), encoding="utf-8") as f:
        cached = sum(1 for _ in f)
    return {"data": data, "budgets_min": [teacher_min, student_min], "train_pairs": pairs or "all",
            "runs": rows, "teacher_outputs": cached, "distilled_wall_seconds": round(time.perf_counter() - t0, 1),
            "teacher_output_seconds": student.info.get("teacher_output_seconds"),
            "test_pairs": (teacher.info.get("counts") or {}).get("test"),
            "distill": student.info.get("distill")}


def run(quick: bool) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["SUITE_HOME"] = tempfile.mkdtemp(prefix="bench-distill-")
    mode = "quick" if quick else "full"
    everything = [*PARTS, "translation"]
    names = [n for n in os.environ.get("BENCH_DISTILL", "").split(",") if n] or everything
    results = {"quick": quick, "machine": machine(), "parts": {}}
    previous = RESULTS / f"{NAME}{'_quick' if quick else ''}.json"
    if names != everything and previous.exists():  # a subset: keep the other parts' last figures
        results["parts"] = json.loads(previous.read_text()).get("parts", {})
    for key in names:
        try:
            results["parts"][key] = translation_part(quick) if key == "translation" else part(key, quick)
        except Exception as err:  # one part's failure is reported, the other still runs
            results["parts"][key] = {"skipped": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        results["load"] = os.getloadavg()
        save_results(NAME + ("_quick" if quick else ""), results)
    return section(results, mode)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _translation_section(res: dict) -> str:
    runs = res["runs"]
    rows = [[label, runs[k]["layers"], f"{runs[k]['bleu']:.2f}", f"{runs[k]['chrf']:.2f}", runs[k]["epochs"],
             f"{runs[k]['train_seconds']:.0f}", f"{runs[k]['decode_sent_per_s']:.1f}"]
            for k, label in (("teacher", "teacher (default layers)"), ("alone", "student, trained alone"),
                             ("distilled", "student, sequence-level distilled"))]
    t, a, d = (runs[k]["bleu"] for k in ("teacher", "alone", "distilled"))
    speed = runs["distilled"]["decode_sent_per_s"] / runs["teacher"]["decode_sent_per_s"]
    return "\n".join([
        f"### translation (`{Path(res['data']).name}`, training pairs: {res['train_pairs']}; teacher "
        f"{res['budgets_min'][0]:g} min, each student {res['budgets_min'][1]:g} min of training)", "",
        md_table(["run", "layers (enc+dec)", "BLEU", "chrF", "epochs", "train s", "decode sent/s (batch 50)"], rows),
        "",
        f"Distilled student: {d - t:+.2f} BLEU from the teacher, {d - a:+.2f} from the same student trained alone; "
        f"it decodes {speed:.2f}x as fast as the teacher. The teacher decoded {res['teacher_outputs']:,} training "
        f"sources once for it{_decoding_time(res)}; the distilled run took {res['distilled_wall_seconds']:.0f} s "
        "in all, decoding included (its train s leave the decoding out). An epoch cut short by the time budget "
        "counts as one. BLEU and chrF: sacreBLEU on the first 2,000 test pairs.", ""])


def _decoding_time(res: dict) -> str:
    seconds = res.get("teacher_output_seconds")
    return f" in {seconds:.0f} s" if seconds else ""


def _part_section(key: str, res: dict) -> str:
    if "skipped" in res:
        return f"### {key}\n\nNot measured: {res['skipped']}.\n"
    if key == "translation":
        return _translation_section(res)
    runs, lat, i8 = res["runs"], res["predict_ms_p50"], res["tflite_int8"]
    header = ["run", "model", "test acc %", "epochs", "train s", "params", "predict ms (p50)",
              "int8 TFLite KB", "int8 TFLite ms (p50)", "int8 TFLite acc %"]
    if "macs" in runs["teacher"]:
        header.insert(2, "MMACs")
    rows = []
    for name, label in (("teacher", "teacher"), ("alone", "student, trained alone"),
                        ("distilled", "student, distilled")):
        r = runs[name]
        q = i8.get(name, {}) if name != "alone" else {}
        row = [label, r["model"] + (f" width {r['width']}" if "width" in r else ""), _pct(r["test_accuracy"]),
               r["epochs"], f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-", f"{r['params']:,}",
               f"{lat[name]:.2f}" if name in lat else "as distilled",
               f"{q['size_bytes'] / 1024:.0f}" if q.get("supported") else "-",
               f"{q['latency_ms_p50']:.3f}" if q.get("supported") else ("-" if name == "alone" else "not exported"),
               _pct(q.get("accuracy")) if q.get("supported") else "-"]
        if "macs" in r:
            row.insert(2, f"{r['macs'] / 1e6:.1f}")
        rows.append(row)
    t, a, d = (runs[k]["test_accuracy"] for k in ("teacher", "alone", "distilled"))
    lines = [f"### {key} (`{Path(res['data']).name}`, student overrides `{res['student_config'] or res['student_name']}`)",
             "", md_table(header, rows), ""]
    lines.append(f"Distilled student: {100 * (d - t):+.2f} points from the teacher, {100 * (d - a):+.2f} from the "
                 f"same student trained alone; Predictor.predict {lat['teacher'] / lat['distilled']:.1f}x faster "
                 "than the teacher.")
    ti, di = i8.get("teacher", {}), i8.get("distilled", {})
    if di.get("supported"):
        lines[-1] += (f" Its int8 TFLite file uses {'builtin ops only' if di['builtin_only'] else 'SELECT_TF_OPS'}"
                      f" and answers in {di['latency_ms_p50']:.3f} ms")
        if ti.get("supported"):
            lines[-1] += (f", {ti['latency_ms_p50'] / di['latency_ms_p50']:.1f}x faster than the teacher's int8 file "
                          f"({ti['latency_ms_p50']:.3f} ms, {'builtin ops only' if ti['builtin_only'] else 'SELECT_TF_OPS'})"
                          f" and {lat['teacher'] / di['latency_ms_p50']:.1f}x faster than the teacher's Predictor")
        lines[-1] += "."
    if "macs" in runs["teacher"]:
        lines[-1] += f" Student multiply-adds: {runs['distilled']['macs'] / runs['teacher']['macs']:.2f} of the teacher's."
    return "\n".join(lines) + "\n"


def section(results: dict, mode: str) -> str:
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if results["quick"] else " --full")
    head = ("## Distillation: students against the same student trained alone\n\n"
            f"Mode: {mode}. Each part trains the teacher (the plugin's default), the student alone and the student "
            "distilled from the teacher (`suite distill`, temperature 4, alpha 0.1), with the same data, seed, split "
            "and config; accuracy is on the whole test split, latency one input per call, median. "
            f"Command: `{cmd}`. Machine: {results['machine']}. Load average at the end: "
            f"{', '.join(f'{x:.1f}' for x in results.get('load', ()))}.\n")
    return head + "\n" + "\n".join(_part_section(k, v) for k, v in results["parts"].items())
