"""Speech commands on FSDD: the suite's plugin against the TensorFlow "simple audio recognition" recipe.

Two protocols on ``fsdd/recordings`` (2,000 clips, 4 speakers, 8 kHz, resampled to the model's 16 kHz):
the data set's own split (index 0-4 test, 5-9 validation, 10-49 train) and speaker-independent
leave-one-speaker-out (train on three speakers, index 0-4 of those for validation, test on the fourth).
Both models see the same one-second waveforms. The suite trains through ``suite.trainer.train`` on a CSV
manifest written here; latency goes through ``Predictor.predict`` vs the compiled forward vs ``model.predict``.

    .venv/bin/python -c "from bench.speech_commands import run; print(run(quick=True))"
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import (
    DOCS,
    batch_rate,
    batched_accuracy,
    interleaved_latency,
    load_results,
    machine,
    md_table,
    peak_rss_mb,
    plot_accuracy_curves,
    save_results,
    serving_memory,
    serving_memory_line,
    shared_data,
    train_with_snapshots,
)

SPEAKERS = ("george", "jackson", "lucas", "nicolas")
QUICK = {"epochs": 3, "synthetic_voices": 10}  # a harness check in minutes, not a figure
QUICK_TRAIN_EVERY, QUICK_BASELINE_EPOCHS = 3, 3
FULL: dict = {}  # the plugin's defaults
BASELINE_EPOCHS = 10  # the tutorial's setting
PLOT = DOCS / "bench_speech_commands_curve.png"
PLOT_QUICK = DOCS / "bench_speech_commands_curve_quick.png"  # quick runs never overwrite the full figure


def fsdd_files(root: Path) -> list[tuple[Path, str, str, int]]:
    out = []
    for p in sorted(root.glob("*.wav")):
        m = re.fullmatch(r"(\d)_([a-z]+)_(\d+)\.wav", p.name)
        if m:
            out.append((p, m.group(1), m.group(2), int(m.group(3))))
    return out


def write_manifest(files, out: Path, protocol: str, train_every: int = 1) -> Path:
    """``path,label,split`` with paths relative to the CSV. protocol: ``standard`` or a held-out speaker.
    ``train_every`` > 1 keeps every n-th training clip (the quick run; validation and test stay whole)."""
    rows = []
    for path, digit, speaker, idx in files:
        if protocol == "standard":
            split = "test" if idx < 5 else "val" if idx < 10 else "train"
        else:
            split = "test" if speaker == protocol else "val" if idx < 5 else "train"
        if split == "train" and idx % train_every:
            continue
        rows.append((os.path.relpath(path, out.parent), digit, split))
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return out


def _arrays(task, bundle):
    def arr(ds):
        xs, ys = zip(*[(np.asarray(x), int(y)) for x, y in ds], strict=True)
        return np.stack(xs), np.asarray(ys)

    return arr(bundle.train), arr(bundle.val), arr(bundle.test)


def _baselines(task, manifest: Path, overrides: dict, bundle=None, epochs: int = BASELINE_EPOCHS) -> dict:
    """The simple-audio recipe on the recorded clips only (what a user of the tutorial has), and, when the
    suite's training split holds synthetic voices, on that same split too."""
    from bench.baselines import simple_audio
    from suite.data import parse_source

    recorded = task.load_data(parse_source(str(manifest)), task.make_config({**overrides, "synthetic_voices": 0}))
    n = len(recorded.meta["class_names"])
    base = simple_audio.train_and_evaluate(*_arrays(task, recorded), n, epochs=epochs)
    out = {"baseline_accuracy": base["accuracy"], "baseline_train_seconds": round(base["train_seconds"], 1),
           "recorded_train_examples": recorded.counts["train"],
           "baseline_curve": [{**p, "seconds": round(p["seconds"], 2)} for p in base["curve"]]}
    if bundle is not None and bundle.meta.get("synthetic_train_examples"):
        voiced = simple_audio.train_and_evaluate(*_arrays(task, bundle), n, epochs=epochs)
        out["baseline_with_voices_accuracy"] = voiced["accuracy"]
    return out


def refresh_baselines(name: str = "speech_commands") -> str:
    """Retrain only the recipe for every protocol of saved results (recorded clips only, as ``run`` now does),
    keep the suite's figures, and redraw the section: ``python -m bench.speech_commands --refresh-baselines``."""
    os.environ.setdefault("SUITE_PLUGINS", "speech_commands")
    from suite.registry import get

    results = load_results(name)
    task = get("speech_commands")
    files = fsdd_files(shared_data("fsdd", "recordings"))
    work = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    for protocol, r in results["protocols"].items():
        manifest = write_manifest(files, work / f"fsdd_{protocol}.csv", protocol)
        old = r.get("baseline_accuracy")
        r.update(_baselines(task, manifest, results["overrides"]))
        if "baseline_with_voices_accuracy" not in r and r["counts"]["train"] > r["recorded_train_examples"]:
            r["baseline_with_voices_accuracy"] = old  # the earlier code fed the recipe the suite's voiced split
            r["synthetic_train_examples"] = r["counts"]["train"] - r["recorded_train_examples"]
        print(protocol, r["baseline_accuracy"], flush=True)
    results["baselines_refreshed"] = machine()
    save_results(name, results)
    return render(results)


def _plot(protocols: dict, path: Path) -> Path | None:
    """Suite and recipe test accuracy against training seconds: the standard split and the first unseen speaker."""
    curves, bars = {}, {}
    for protocol, r in protocols.items():
        if "suite_curve" not in r or (protocol != "standard" and "unseen speaker bar" in bars):
            continue  # one unseen speaker keeps the figure readable
        name = "standard split" if protocol == "standard" else f"unseen {protocol}"
        curves[f"suite, {name}"] = r["suite_curve"]
        curves[f"simple-audio, {name}"] = r["baseline_curve"]
        bars["standard bar" if protocol == "standard" else "unseen speaker bar"] = 98.0 if protocol == "standard" else 85.0
    if not curves:
        return None
    plot_accuracy_curves(curves, path, bar=bars, ylabel="FSDD test accuracy (%)",
                         title="FSDD digits: test accuracy against training time")
    return path


def _spawn(protocols: list[str], quick: bool, epochs: int | None, config: dict | None) -> tuple[subprocess.Popen, Path]:
    """A child process training ``protocols``; it writes its results (JSON) to the returned path."""
    out = Path(tempfile.mkstemp(prefix="bench-speech-", suffix=".json")[1])
    code = ("import json, sys; from bench import speech_commands as b; "
            f"r = b.run(quick={quick!r}, epochs={epochs!r}, protocols={protocols!r}, _results_to={str(out)!r}, "
            f"config={config!r})")
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.DEVNULL), out


def run(quick: bool = True, epochs: int | None = None, protocols: list[str] | None = None,
        jobs: int | None = None, _results_to: str | None = None, config: dict | None = None) -> str:
    """Quick: the standard split and one held-out speaker, 3 epochs. Full: every speaker, default epochs.

    ``protocols`` (``standard`` and/or speaker names) runs a subset; its results are saved under their own
    name. ``config`` adds plugin config overrides (an experiment; its results are saved as
    ``speech_commands_experiment*``, leaving the defaults' figures alone). ``jobs`` > 1 trains the protocols in that many processes at once (default: 2 for the full run, whose
    five trainings would otherwise run one after another on a two-core machine); per-protocol train times
    are then measured under that sharing.
    """
    root = shared_data("fsdd", "recordings")
    if root is None:
        return "## Speech commands (FSDD)\n\nSkipped: `../shared/data/fsdd/recordings` not found.\n"
    os.environ.setdefault("SUITE_PLUGINS", "speech_commands")
    from suite.data import parse_source
    from suite.predictor import Predictor, make_forward
    from suite.registry import get

    task = get("speech_commands")
    files = fsdd_files(root)
    noise = shared_data("speech_noise")
    overrides = dict(QUICK if quick else FULL)
    if epochs:
        overrides["epochs"] = int(epochs)
    overrides.update(config or {})
    if noise is not None:
        overrides["noise_dir"] = str(noise)
    subset = bool(protocols)
    protocols = list(protocols) if protocols else ["standard", SPEAKERS[0]] if quick else ["standard", *SPEAKERS]
    unknown = [p for p in protocols if p != "standard" and p not in SPEAKERS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}: use 'standard' or one of {SPEAKERS}")
    work = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    os.environ["SUITE_HOME"] = str(work / "runs")
    results: dict = {"quick": quick, "overrides": overrides, "protocols": {}, "machine": machine()}
    jobs = int(jobs if jobs is not None else 1 if quick or subset or _results_to else 2)
    children = []
    if jobs > 1 and len(protocols) > 1:  # the last group trains here, the others in child processes
        groups = [protocols[i::jobs] for i in range(jobs) if protocols[i::jobs]]
        children = [_spawn(g, quick, epochs, config) for g in groups[:-1]]
        mine = groups[-1]
        results["jobs"] = len(groups)
    else:
        mine = protocols
    last_run = None
    for protocol in mine:
        manifest = write_manifest(files, work / f"fsdd_{protocol}.csv", protocol, QUICK_TRAIN_EVERY if quick else 1)
        bundle = task.load_data(parse_source(str(manifest)), task.make_config(overrides))
        suite = train_with_snapshots(task, str(manifest), overrides, name=f"fsdd-{protocol}", home=work / "runs",
                                     bundle=bundle)
        run_ = suite["run"]
        tr, va, te = _arrays(task, bundle)
        model, curve = run_.load_model(), []
        forward = make_forward(model)
        for p in suite["points"]:  # each epoch's weights on the test split, for accuracy against training time
            model.load_weights(p.pop("snapshot"))
            curve.append({"epoch": p["epoch"], "seconds": round(p["seconds"], 2),
                          "test_accuracy": batched_accuracy(forward, te[0], te[1], batch=250)})
        results["protocols"][protocol] = {
            "suite_accuracy": run_.metrics["test"]["accuracy"], "suite_train_seconds": round(suite["wall_seconds"], 1),
            "counts": bundle.counts, "suite_curve": curve,
            "synthetic_train_examples": bundle.meta.get("synthetic_train_examples", 0),
            **_baselines(task, manifest, overrides, bundle, QUICK_BASELINE_EPOCHS if quick else BASELINE_EPOCHS),
        }
        print(protocol, {k: v for k, v in results["protocols"][protocol].items() if "curve" not in k}, flush=True)
        last_run = run_
    if _results_to:  # a child of a parallel run: hand the figures back and stop
        Path(_results_to).write_text(json.dumps(results["protocols"]))
        return ""
    for proc, out in children:
        if proc.wait() != 0:
            raise RuntimeError(f"a parallel benchmark process failed (exit {proc.returncode})")
        results["protocols"].update(json.loads(out.read_text()))
        out.unlink()
    results["protocols"] = {p: results["protocols"][p] for p in protocols}

    predictor = Predictor(last_run)
    raws = [f[0].read_bytes() for f in files[:BATCH]]
    results["latency_seconds"] = latency(predictor, raws[0], quick=quick)
    results["batch"] = batch_throughput(predictor, raws)
    results["peak_rss_mb"] = peak_rss_mb()
    results["serving_memory"] = serving_memory(last_run.path, raws[:50])
    save_results("speech_commands" + ("_experiment" if config else "") + ("_quick" if quick else "")
                 + ("_" + "_".join(protocols) if subset else ""), results)

    results["command"] = {"epochs": epochs, "protocols": protocols if subset else None, "jobs": jobs,
                          "config": config}
    save_results("speech_commands" + ("_experiment" if config else "") + ("_quick" if quick else "")
                 + ("_" + "_".join(protocols) if subset else ""), results)
    return render(results)


def render(results: dict) -> str:
    """The Markdown section (and the curve plot) from saved results."""
    quick, overrides = results["quick"], results["overrides"]
    c = results.get("command") or {}
    epochs, subset_protocols, jobs, config = c.get("epochs"), c.get("protocols"), c.get("jobs", 1), c.get("config")
    subset = bool(subset_protocols)
    plot = _plot(results["protocols"], PLOT_QUICK if quick or subset or config else PLOT)
    voiced = any("baseline_with_voices_accuracy" in r for r in results["protocols"].values())
    rows = []
    for protocol, r in results["protocols"].items():
        name = "standard split (index 0-4 test)" if protocol == "standard" else f"unseen speaker: {protocol}"
        rows.append([name, f"{100 * r['suite_accuracy']:.1f}%", f"{100 * r['baseline_accuracy']:.1f}%",
                     *([f"{100 * r['baseline_with_voices_accuracy']:.1f}%"] if voiced else []),
                     r["suite_train_seconds"], r["baseline_train_seconds"]])
    speakers = [p for p in results["protocols"] if p != "standard"]
    if speakers:
        def mean(key):
            return f"{100 * np.mean([results['protocols'][p][key] for p in speakers]):.1f}%"

        rows.append(["mean over unseen speakers", mean("suite_accuracy"), mean("baseline_accuracy"),
                     *([mean("baseline_with_voices_accuracy")] if voiced else []), "", ""])
    lat_rows = [[k, f"{1000 * v['p50']:.2f}", f"{1000 * v['p95']:.2f}"] for k, v in results["latency_seconds"].items()]
    cmd = (f'`.venv/bin/python -c "from bench.speech_commands import run; '
           f'print(run(quick={quick}{", epochs=" + str(epochs) if epochs else ""}'
           f'{", protocols=" + repr(subset_protocols) if subset else ""}{", jobs=" + str(jobs) if jobs > 1 else ""}'
           f'{", config=" + repr(config) if config else ""}))"`')
    if not subset and not config:
        cmd += f" (or `python -m bench.run --only speech_commands{' --quick' if quick else ' --full'}`)"
    synthetic = max((r.get("synthetic_train_examples", 0) for r in results["protocols"].values()), default=0)
    return "\n".join([
        "## Speech commands (FSDD)" + (" — quick" if quick else ""),
        "",
        f"Data: `fsdd/recordings/*.wav` (2,000 clips, 8 kHz, resampled to 16 kHz, 1 s). Splits: standard = "
        f"index 0-4 test, 5-9 validation, 10-49 train; unseen speaker = train on the other three speakers "
        f"(index 0-4 of them for validation). Suite: the plugin's defaults, config overrides `{overrides}` "
        f"(background noise: `speech_noise/`)"
        + (f"; its training split also holds {synthetic:,} synthetic clips (`synthetic_voices`: espeak-ng "
           "renditions of each class name in many voices; never in validation or test)" if synthetic else "")
        + f". Baseline: TensorFlow simple-audio recipe, {QUICK_BASELINE_EPOCHS if quick else BASELINE_EPOCHS} "
        "epochs, on the recorded training clips "
        "only (what its user has)"
        + ("; the next column gives it the suite's training split, synthetic voices included" if voiced else "")
        + "." + ((f" Quick mode: one held-out speaker, one training clip in {QUICK_TRAIN_EVERY}, {QUICK['epochs']} "
                 f"epochs, {QUICK['synthetic_voices']} synthetic voices a class.") if quick else "")
        + (f" The protocols trained in {results['jobs']} processes at once, so train seconds are under that "
           "sharing." if results.get("jobs", 1) > 1 else ""),
        f"Command: {cmd}. Machine: {results['machine']}."
        + (f" {results['note']}" if results.get("note") else "")
        + (" The baseline columns were retrained afterwards by `python -m bench.speech_commands "
           "--refresh-baselines`." if results.get("baselines_refreshed") else ""),
        "",
        md_table(["protocol", "suite test acc", "simple-audio test acc",
                  *(["simple-audio + synthetic voices"] if voiced else []), "suite train s", "baseline train s"],
                 rows),
        "",
        *([f"Test accuracy against training time, each epoch's weights scored on the test split ({plot.name}; the "
           "table's suite figure is the best-by-validation epoch's):", "", f"![accuracy against training time]"
           f"({plot.name})", ""] if plot else []),
        "Single-example latency (one 1-s clip; last trained model"
        + (f"; {results['latency_note']}" if results.get("latency_note") else "") + "):",
        "",
        md_table(["path", "p50 ms", "p95 ms"], lat_rows),
        "",
        *([f"Suite path / raw forward: {ratio:.2f}x; model.predict / suite path: {slow:.1f}x.", ""]
          if (ratio := _ratio(results, 0, 1)) and (slow := _ratio(results, 2, 0)) else []),
        *([f"Batch of {b['batch']} clips: {b['predict_clips_per_sec']:.0f} clips/s through Predictor.predict "
           f"(WAV bytes: decode, resample, forward, postprocess), {b['forward_clips_per_sec']:.0f} clips/s through "
           "the compiled forward on decoded waveforms.", ""] if (b := results.get("batch")) else []),
        *([serving_memory_line(results["serving_memory"], None)
           + f" Training: peak RSS of the benchmark process {results['peak_rss_mb']:.0f} MB.", ""]
          if results.get("serving_memory") and results.get("peak_rss_mb") else []),
    ])


def _ratio(results: dict, a: int, b: int) -> float | None:
    rows = list(results.get("latency_seconds", {}).values())
    return rows[a]["p50"] / rows[b]["p50"] if len(rows) > max(a, b) and rows[b]["p50"] else None


def latency(predictor, raw: bytes, *, quick: bool) -> dict:
    """One clip through the three paths, called in turn one call at a time (the machine's load hits them alike)."""
    x = predictor.decode(raw)[None]
    model = predictor.model
    repeats = 10 if quick else 40
    return interleaved_latency({
        "Predictor.predict (decode + forward + postprocess)": (lambda: predictor.predict([raw]), repeats),
        "compiled forward (predictor.forward)": (lambda: predictor.forward(x), repeats),
        "model.predict": (lambda: model.predict(x, verbose=0), max(3, repeats // 5)),
    }, rounds=5 if quick else 10)


BATCH = 64


def batch_throughput(predictor, raws: list[bytes]) -> dict:
    """Clips per second at one batch: the whole serving path on the WAV bytes, and the compiled forward alone
    on the decoded waveforms."""
    raws = (raws * (BATCH // max(1, len(raws)) + 1))[:BATCH]
    x = np.stack([predictor.decode(r) for r in raws])
    return {"batch": BATCH,
            "predict_clips_per_sec": batch_rate(lambda: predictor.predict(raws), BATCH),
            "forward_clips_per_sec": batch_rate(lambda: np.asarray(predictor.forward(x)), BATCH)}


def refresh_latency(run_dir: str) -> str:
    """Re-measure the latency table on a finished run of the default model, keeping every other figure."""
    import datetime

    from suite.predictor import Predictor
    from suite.runstore import RunStore

    results = load_results("speech_commands")
    run = RunStore(Path(run_dir).parent).get(Path(run_dir).name)
    clip = sorted((shared_data("fsdd", "recordings") or Path(".")).glob("*.wav"))[:50]
    if not clip:
        raise SystemExit("shared data `fsdd/recordings/` not found (set SUITE_SHARED_DATA)")
    predictor = Predictor(run)
    raws = [c.read_bytes() for c in clip]
    results["latency_seconds"] = latency(predictor, raws[0], quick=False)
    results["batch"] = batch_throughput(predictor, raws)
    results["serving_memory"] = serving_memory(run.path, raws)
    results["latency_note"] = (f"re-measured {datetime.date.today().isoformat()} by `python -m bench.speech_commands "
                               f"--refresh-latency RUN` on a run of the default model ({run.name}), the paths "
                               "called in turn, one call at a time")
    save_results("speech_commands", results)
    return render(results)


if __name__ == "__main__":
    import sys

    if "--refresh-baselines" in sys.argv:
        section = refresh_baselines()
        from bench.common import RESULTS
        from bench.run import write_doc

        (RESULTS / "speech_commands.md").write_text(section)
        write_doc()
        print(section)
    elif "--refresh-latency" in sys.argv:
        from bench.common import RESULTS
        from bench.run import write_doc

        section = refresh_latency(sys.argv[sys.argv.index("--refresh-latency") + 1])
        (RESULTS / "speech_commands.md").write_text(section)
        write_doc()
        print(section)
    elif "--render" in sys.argv:
        print(render(load_results("speech_commands")))
    else:
        print(run(quick="--full" not in sys.argv))
