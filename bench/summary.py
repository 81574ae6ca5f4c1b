"""The headline figures, drawn from the full runs' saved results (bench/results/*.json), never typed in.

``bench.run`` puts this table at the top of docs/BENCHMARKS.md and between the markers in README.md each time it
assembles the full document; ``tests/test_bench_summary.py`` checks that the README's copy matches the results.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import RESULTS, md_table

START, END = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "-"


def _latency(paths: dict | None, suite: int = 0, predict: int = 2) -> str:
    """'suite p50 ms (N x faster than model.predict)' from a latency table (suite path first, model.predict third)."""
    rows = list((paths or {}).values())
    if len(rows) <= max(suite, predict):
        return "-"
    s, p = rows[suite]["p50"], rows[predict]["p50"]
    return f"{1000 * s:.1f} ms ({p / s:.0f}x faster)"


def _serving(d: dict | None) -> str:
    mem = (d or {}).get("serving_memory") or {}
    return f"{mem['peak_rss_mb']:.0f} MB" if mem.get("peak_rss_mb") else "-"


def _int8(export: dict | None, task: str) -> str:
    r = ((export or {}).get("plugins") or {}).get(task) or {}
    if r.get("int8_size_ratio") is None:
        return "-"
    return f"{100 * r['int8_size_ratio']:.0f}% of float32, {r['int8_accuracy_delta_points']:+.2f} pts"


def _seconds(protocol: dict, who: str) -> str:
    """' (N s)' from a speech protocol's ``suite_train_seconds`` / ``baseline_train_seconds``, blank if unsaved."""
    t = protocol.get(f"{who}_train_seconds")
    return f" ({t:.0f} s)" if t is not None else ""


def _mean_times(protocols: list[dict]) -> dict:
    """The mean training times over the unseen-speaker protocols that saved both."""
    out = {}
    for who in ("suite", "baseline"):
        ts = [q[f"{who}_train_seconds"] for q in protocols if q.get(f"{who}_train_seconds") is not None]
        if ts and len(ts) == len(protocols):
            out[f"{who}_train_seconds"] = sum(ts) / len(ts)
    return out


def _cifar_row(d: dict) -> list[str]:
    """The default command where it was measured, else the longest budget of the curve; the stronger recipe at
    that training time."""
    default, top = d.get("default"), d["suite"][-1]
    recipe = d["recipes"]["keras_resnet20"][-1]
    suite = (f"{_pct(default['test_accuracy'])} ({default['wall_seconds'] / 60:.0f} min, whole command)" if default
             else f"{_pct(top['test_accuracy'])} ({top['budget_min']:g} min budget)")
    return ["image classification, photos", "CIFAR-10 `cifar10/test`, all 10,000 images", suite,
            f"{_pct(recipe['test_accuracy'])} Keras ResNet20 example ({recipe['seconds'] / 60:.0f} min)",
            "-", "-", "-"]


def _photos_row(d: dict) -> list[str]:
    """The default command on the varying-size photo folder, beside the tutorial's better point."""
    from bench.photos import best_tutorial

    suite, tut = d["suite"], best_tutorial(d["tutorial"])
    return ["image classification, varying photos",
            f"{d['counts']['test']:,} test JPEGs of 200-500 px built from CIFAR-10 (`bench.photo_folder`)",
            f"{_pct(suite['test_accuracy'])} ({suite['train_seconds'] / 60:.0f} min)",
            f"{_pct(tut['test_accuracy'])} TF image classification tutorial ({tut['seconds'] / 60:.0f} min)",
            "-", "-", "-"]


def _distill_rows(d: dict) -> list[list[str]]:
    """Each measured student: distilled against the same student trained alone, with the teacher beside it."""
    data = {"sentiment": "SST-2 `test.tsv`, 1,821 sentences", "image": "CIFAR-10 `cifar10/test`, all 10,000 images"}
    out = []
    for key, part in d.get("parts", {}).items():
        if "runs" not in part:
            continue
        runs, lat = part["runs"], part.get("predict_ms_p50", {})
        t, a, s = runs["teacher"], runs["alone"], runs["distilled"]
        if "bleu" in s:  # a text-output student: BLEU and decoding speed
            out.append([f"distilled student, {key}", "Tatoeba `spa-eng/test.tsv`, first 2,000 pairs",
                        f"BLEU {s['bleu']:.2f} {s['layers']} layers (teacher {t['layers']} {t['bleu']:.2f})",
                        f"BLEU {a['bleu']:.2f} same student trained alone",
                        f"{s['decode_sent_per_s']:.0f} sent/s (teacher {t['decode_sent_per_s']:.0f})", "-", "-"])
            continue
        size = (f", {s['macs'] / t['macs']:.2f}x the teacher's multiply-adds" if "macs" in t and "macs" in s
                else "")
        i8 = (part.get("tflite_int8") or {}).get("distilled") or {}
        out.append([f"distilled student, {key}", data.get(key, key),
                    f"{_pct(s['test_accuracy'])} {s['model']} (teacher {t['model']} {_pct(t['test_accuracy'])}{size})",
                    f"{_pct(a['test_accuracy'])} same student trained alone",
                    (f"{lat['distilled']:.1f} ms (teacher {lat['teacher']:.1f} ms)" if "distilled" in lat else "-"),
                    "-", (f"{i8['size_bytes'] / 1024:.0f} KB, {100 * (i8['accuracy'] - i8['keras_accuracy']):+.2f} pts"
                          if i8.get("supported") else "-")])
    return out


def rows(folder: Path | None = None) -> list[list[str]]:
    folder = folder or RESULTS
    trans, speech = _load(folder, "translation"), _load(folder, "speech_commands")
    export = _load(folder, "export_full")
    out = []
    # the two classification benchmarks share one layout: suite, baseline, latency_s
    for task, label, data, recipe in (
            ("image_classification", "image classification", "MNIST `mnist.npz`, all 10,000 test images",
             "keras.io simple convnet"),
            ("sentiment", "sentiment", "SST-2 `test.tsv`, 1,821 sentences", "keras.io text classification")):
        d = _load(folder, task)
        if d:
            out.append([label, data, f"{_pct(d['suite']['test_accuracy'])} ({d['suite']['train_seconds_fit']:.0f} s)",
                        f"{_pct(d['baseline']['test_accuracy'])} {recipe} ({d['baseline']['train_seconds']:.0f} s)",
                        _latency(d.get("latency_s")), _serving(d), _int8(export, task)])
    cifar = _load(folder, "cifar10")
    if cifar and cifar.get("suite"):
        out.append(_cifar_row(cifar))
    photos = _load(folder, "photos")
    if photos and photos.get("suite"):
        out.append(_photos_row(photos))
    distilled = _load(folder, "distill")
    if distilled:
        out.extend(_distill_rows(distilled))
    if trans:
        s, r = trans["suite"], trans.get("recipe") or {}
        out.append(["translation EN→ES", f"Tatoeba `spa-eng/test.tsv`, first {s['examples']:,} pairs",
                    f"BLEU {s['bleu']:.2f} ({s['config'].get('time_budget_minutes') or s['train_seconds'] / 60:.0f} min)",
                    (f"BLEU {r['bleu']:.2f} KerasHub example ({r['train_seconds'] / 60:.0f} min)"
                     if r.get("bleu") is not None else "-"),
                    _latency(trans.get("latency_seconds")), _serving(trans), "- (SavedModel: string to string)"])
    if speech:
        p = speech["protocols"]
        unseen = [k for k in p if k != "standard"]
        if "standard" in p:
            out.append(["speech commands", "FSDD `recordings/`, index 0-4 of each speaker",
                        f"{_pct(p['standard']['suite_accuracy'])}{_seconds(p['standard'], 'suite')}",
                        f"{_pct(p['standard']['baseline_accuracy'])} TF simple audio"
                        f"{_seconds(p['standard'], 'baseline')}",
                        _latency(speech.get("latency_seconds")), _serving(speech), _int8(export, "speech_commands")])
        if unseen:
            mean = sum(p[k]["suite_accuracy"] for k in unseen) / len(unseen)
            base = sum(p[k]["baseline_accuracy"] for k in unseen) / len(unseen)
            out.append(["speech, unseen speaker", f"FSDD, each of {len(unseen)} speakers held out in turn (mean)",
                        _pct(mean) + _seconds(_mean_times([p[k] for k in unseen]), "suite"),
                        f"{_pct(base)} TF simple audio" + _seconds(_mean_times([p[k] for k in unseen]), "baseline"),
                        "", "", ""])
    return out


def table(folder: Path | None = None, details: str = "[docs/BENCHMARKS.md](docs/BENCHMARKS.md)") -> str:
    """The Markdown block: the table, what it was measured on, and where the details are."""
    folder = folder or RESULTS
    found = rows(folder)
    if not found:
        return "No full benchmark results yet: `make bench`."
    machine = next((d["machine"] for n in ("image_classification", "sentiment", "translation", "speech_commands")
                    if (d := _load(folder, n)) and d.get("machine")), "?")
    others = []
    for name, label in (("cifar10", "CIFAR-10"), ("photos", "varying photos")):
        d = _load(folder, name)
        if d and d.get("machine") and d["machine"] != machine:  # another session's machine
            others.append(f"the {label} row on {d['machine']}")
    if others:
        machine += f" ({'; '.join(others)})"
    return "\n".join([
        md_table(["task", "test data", "suite default (training time)", "reference recipe, same data",
                  "one prediction, p50 (vs model.predict)", "serving peak RSS", "int8 TFLite (size, accuracy vs Keras)"],
                 found),
        "",
        f"Measured by `make bench` on {machine}; each figure's data split, command and conditions are in "
        f"{details}.",
    ])


def replace_block(text: str, block: str) -> str:
    """``text`` with what sits between the markers replaced by ``block`` (unchanged when the markers are absent)."""
    if START not in text or END not in text:
        return text
    head, rest = text.split(START, 1)
    return head + START + "\n" + block.strip() + "\n" + END + rest.split(END, 1)[1]
