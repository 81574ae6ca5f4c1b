"""Export: artifact sizes, int8 vs float32 TFLite, accuracy re-scored on the exported files, TFLite vs Keras latency.

For each plugin that is installed (image on MNIST, sentiment on SST-2, speech on FSDD, translation on spa-eng),
trains a model on the shared real data through the suite's trainer, exports every format through
``suite.export.export_run`` and reads the verification reports: agreement and the test metric there are
recomputed from each artifact's own outputs on the first N test examples (translation: exact-match agreement
with the Keras model's translations), and latency is one example per call (p50). Translation trains the default
configuration for a fixed time: its files' size depends on the configuration, not on how long it trained.
``python -m bench.run --only export [--quick]`` runs it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, machine, md_table, save_results, shared_data

NAME = "export"
SIZE_BAR, ACC_BAR = 0.30, 1.0  # int8 at most 30% of float32; accuracy within 1.0 point of Keras


def _image_source(work: Path) -> str | None:
    path = shared_data("mnist", "mnist.npz")
    return str(path) if path else None


def _sentiment_source(work: Path) -> str | None:
    path = shared_data("sst2")
    return str(path) if path else None


def _speech_source(work: Path) -> str | None:
    root = shared_data("fsdd", "recordings")
    if root is None:
        return None
    from bench.speech_commands import fsdd_files, write_manifest

    return str(write_manifest(fsdd_files(root), work / "fsdd_standard.csv", "standard"))


def _translation_source(work: Path) -> str | None:
    path = shared_data("spa-eng")
    return str(path) if path else None


# plugin -> (data, quick overrides, full overrides); overrides go on top of the plugin's sample_overrides
PLUGINS = {
    "image_classification": (_image_source, {"epochs": 2, "max_train_examples": 6000}, {"epochs": 6}),
    "sentiment": (_sentiment_source, {"epochs": 2, "max_train_examples": 8000}, {"epochs": 4}),
    "speech_commands": (_speech_source, {"epochs": 3}, {}),
    "translation": (_translation_source, {"epochs": 1, "max_train_examples": 4000, "vocab_sample": 4000},
                    {"time_budget_minutes": 6, "epochs": 40}),
}


def _one(name: str, quick: bool, work: Path) -> dict:
    from suite.export import export_run
    from suite.registry import get_registry
    from suite.trainer import TrainOptions, train

    reg = get_registry()
    if name not in reg:
        why = next((f.reason for f in reg.failures if f.name == name), "not installed")
        return {"skipped": f"plugin not ready: {why}"}
    task = reg.get(name)
    source_fn, quick_over, full_over = PLUGINS[name]
    source = source_fn(work)
    if source is None:
        return {"skipped": "shared data not found (set SUITE_SHARED_DATA)"}
    # quick: the plugin's small sample config, shortened; full: the plugin's own defaults
    overrides = {**task.sample_overrides, **quick_over} if quick else dict(full_over)
    t = time.perf_counter()
    run = train(task, source, overrides, name=f"export-{name}", options=TrainOptions(tensorboard=False))
    if run.status != "completed":
        return {"skipped": f"training ended {run.status}: {run.info.get('error')}"}
    out = {"data": source, "overrides": overrides, "train_seconds": round(time.perf_counter() - t, 1),
           "keras_test_accuracy": (run.metrics.get("test") or {}).get("accuracy"), "formats": {}}
    n = (50 if quick else 500) if task.output_kind == "text" else (200 if quick else 2000)
    reports = export_run(run, formats="all", quantize="none", examples=n)
    if reports.get("tflite", {}).get("supported"):
        for mode in ("int8",) if quick else ("float16", "dynamic", "int8"):  # quick: the mode with a bar
            reports[f"tflite-{mode}"] = export_run(run, formats="tflite", quantize=mode, examples=n)["tflite"]
    for key, rep in reports.items():
        row = {"supported": rep.get("supported"), "reason": rep.get("reason"), "size_bytes": rep.get("size_bytes"),
               "quantize": rep.get("quantize"), "notes": rep.get("notes", [])}
        row.update({k: v for k, v in (rep.get("verification") or {}).items() if not isinstance(v, (list, dict))})
        out["formats"][key] = row
    f32, i8 = out["formats"].get("tflite", {}), out["formats"].get("tflite-int8", {})
    if f32.get("supported") and i8.get("supported"):
        out["int8_size_ratio"] = i8["size_bytes"] / f32["size_bytes"]
        out["int8_accuracy_delta_points"] = 100 * (i8["metric"] - i8["keras_metric"])
        out["int8_latency_ms_p50"] = i8["latency_ms_p50"]
        out["keras_latency_ms_p50"] = i8["keras_latency_ms_p50"]
    return out


def run(quick: bool) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ["SUITE_HOME"] = str(work / "runs")
    results: dict = {"quick": quick, "machine": machine(), "plugins": {}}
    names = [n for n in os.environ.get("BENCH_EXPORT_PLUGINS", "").split(",") if n] or list(PLUGINS)
    mode = "quick" if quick else "full"
    if names != list(PLUGINS):  # a subset: keep the other plugins' last figures of this mode
        previous = RESULTS / f"export_{mode}.json"
        if previous.exists():
            results["plugins"] = json.loads(previous.read_text()).get("plugins", {})
    for name in names:
        try:
            results["plugins"][name] = _one(name, quick, work)
        except Exception as err:  # one plugin's failure is reported, the others still run
            results["plugins"][name] = {"skipped": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    save_results(f"export_{mode}", results)
    return _markdown(results, quick)


def _markdown(results: dict, quick: bool) -> str:
    lines = ["## Export", "",
             f"Measured on {results['machine']} with `python -m bench.run --only export{' --quick' if quick else ' --full'}` "
             "(`BENCH_EXPORT_PLUGINS=a,b` runs only those plugins and keeps the others' last figures). "
             "Each plugin is trained on the shared real data, exported with `suite.export.export_run`, and every "
             "file is re-scored on the first N test examples by running the file itself (LiteRT interpreter, "
             "onnxruntime, `tf.saved_model.load`, a fresh-process safe-mode `.keras` reload). Latency is one "
             "example per call, median. Agreement: the share of examples whose top-1 class (translation: whole "
             "translated sentence) equals the Keras model's. Bars: int8 TFLite at most 30% of float32, accuracy "
             "within 1.0 point of Keras, TFLite latency at most Keras'.", ""]
    summary = []
    for name in PLUGINS:  # full mode, plugins not run: a plugin's own export figures, or where the quick ones are
        if name in results["plugins"] or quick:
            continue
        own = RESULTS / f"{name}_export.md"
        lines += ["", own.read_text().strip().replace("## ", "### ", 1)] if own.exists() else [
            "", f"- **{name}**: no full-mode figures yet (`bench/results/export_quick.json` holds the last quick run)."]
    for name, res in results["plugins"].items():
        if "skipped" in res:
            lines.append(f"- **{name}**: skipped — {res['skipped']}")
            continue
        rows = []
        for key, f in res["formats"].items():
            if not f.get("supported"):
                rows.append([key, "—", "—", "—", "—", "—", f"not exported: {f.get('reason')}"])
                continue
            rows.append([key, f"{f['size_bytes'] / 1024:.1f}", f.get("top1_agreement", f.get("exact_match_agreement", "")),
                         f"{100 * f['metric']:.2f}" if f.get("metric") is not None else "",
                         f"{100 * f['keras_metric']:.2f}" if f.get("keras_metric") is not None else "",
                         f"{f['latency_ms_p50']:.3f}" if f.get("latency_ms_p50") is not None else "",
                         f"keras {f['keras_latency_ms_p50']:.3f} ms"])
        n = next((f["examples"] for f in res["formats"].values() if f.get("examples")), "?")
        metric = next((f["metric_name"] for f in res["formats"].values() if f.get("metric_name")), "accuracy")
        metric = "exact match" if metric == "exact_match" else metric
        lines += ["", f"### {name} (`{Path(res['data']).name}`, {n} "
                  f"test examples, training {res['train_seconds']} s, overrides `{res['overrides']}`)", "",
                  md_table(["export", "size KB", "agreement with keras", f"{metric} %", f"keras {metric} %",
                            "latency p50 ms", "note"], rows)]
        if "int8_size_ratio" in res:
            ok_size = res["int8_size_ratio"] <= SIZE_BAR
            ok_acc = abs(res["int8_accuracy_delta_points"]) <= ACC_BAR
            ok_lat = res["int8_latency_ms_p50"] <= res["keras_latency_ms_p50"]
            summary.append([name, f"{res['int8_size_ratio']:.3f}", "yes" if ok_size else "NO",
                            f"{res['int8_accuracy_delta_points']:+.2f}", "yes" if ok_acc else "NO",
                            f"{res['int8_latency_ms_p50']:.3f} vs {res['keras_latency_ms_p50']:.3f}",
                            "yes" if ok_lat else "NO"])
    if summary:
        lines += ["", "### int8 TFLite against the bars", "",
                  md_table(["plugin", "int8/float32 size", "<= 30%", "accuracy delta (points)", "within 1.0",
                            "latency ms int8 vs keras", "<= keras"], summary)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(run("--full" not in sys.argv))
