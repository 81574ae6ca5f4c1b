"""Shared helpers of the benchmark harness.

Each benchmark module ``bench/<name>.py`` defines ``run(quick: bool) -> str``: it measures, writes any plots to
``docs/bench_<name>_*.png``, saves raw figures with :func:`save_results`, and returns a Markdown section for
``docs/BENCHMARKS.md``. ``python -m bench.run [--quick|--full] [--only NAME]`` runs the modules, each in its own
process so that memory figures do not mix, and assembles the document.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"


def shared_data(*parts: str) -> Path | None:
    """A path under the shared real data, or None when it is absent (the benchmark then says so)."""
    base = Path(os.environ.get("SUITE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base.joinpath(*parts)
    return path if path.exists() else None


def machine() -> str:
    """One line naming the machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, TensorFlow {tf.__version__}"


def latency_stats(fn: Callable[[], Any], *, warmup: int = 10, repeats: int = 200) -> dict[str, float]:
    """p50/p95/mean seconds of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"p50": times[len(times) // 2], "p95": times[int(len(times) * 0.95) - 1], "mean": statistics.fmean(times)}


def interleaved_latency(paths: dict, rounds: int) -> dict[str, dict[str, float]]:
    """p50/p95/mean seconds per path, the paths called one call at a time in turn.

    Other jobs share this machine and its speed drifts within seconds. Timed in blocks of 40 calls per path,
    a path was judged by the moment its block ran and by what ran just before it (``model.predict`` leaves its
    garbage and threads to the next block): one build of the speech predictor measured 1.01x to 1.34x the raw
    forward call from run to run, 1.22x-1.31x with ``model.predict`` in the rotation. Here every call of one
    path sits beside a call of each other path, the order rotates so none always follows another, and each
    round starts warm with the garbage collected: 1.11x-1.15x over three runs. A path with fewer repeats
    (``model.predict``) takes part in the first calls of each round only.
    """
    names = list(paths)
    times: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rounds):
        for fn, _ in paths.values():
            fn()
            fn()
        gc.collect()
        for j in range(max(repeats for _, repeats in paths.values())):
            shift = j % len(names)
            for name in names[shift:] + names[:shift]:
                fn, repeats = paths[name]
                if j < repeats:
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"p50": ts[len(ts) // 2], "p95": ts[max(0, int(len(ts) * 0.95) - 1)], "mean": statistics.fmean(ts)}
    return out


def batch_rate(fn: Callable[[], Any], n: int, *, rounds: int = 5) -> float:
    """Examples per second of ``fn()``, which handles ``n`` examples: the median of ``rounds`` timed calls after
    one warm call (the first call of a new batch shape traces)."""
    return n / latency_stats(fn, warmup=1, repeats=rounds)["p50"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cli_train(data: Path, *extra: str, prefix: str) -> dict:
    """``suite train image_classification --data DATA`` run as a user types it, in a throwaway SUITE_HOME: wall and
    CPU seconds of the whole command, its peak RSS, and what the run folder holds (metrics, run info, meta,
    epoch events). ``extra`` carries any ``--set`` a quick mode needs."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    cmd = [sys.executable, "-m", "suite.cli", "train", "image_classification", "--data", str(data),
           "--name", "default", "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                              env={**os.environ, "SUITE_HOME": str(home)})
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"suite run failed: {proc.stderr.strip().splitlines()[-3:]}")
        run_dir = home / "default"
        meta = run_dir / "meta.json"
        out = {"metrics": json.loads((run_dir / "metrics.json").read_text()),
               "info": json.loads((run_dir / "run.json").read_text()),
               "meta": json.loads(meta.read_text()) if meta.exists() else {},
               "epochs": [e for e in map(json.loads, filter(None, (run_dir / "events.jsonl").read_text().splitlines()))
                          if e.get("event") == "epoch_end"]}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {**out, "wall_seconds": wall, "peak_rss_mb": after.ru_maxrss / 1024.0,
            "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


_SERVE = """
import json, os, pickle, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
def rss():  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
t0 = time.perf_counter()
from suite.predictor import Predictor
from suite.runstore import RunStore
imported = rss()
predictor = Predictor(RunStore(sys.argv[1]).get(sys.argv[2]))
loaded, load_s = rss(), time.perf_counter() - t0
with open(sys.argv[3], "rb") as f:
    raws = pickle.load(f)
for raw in raws:
    predictor.predict([raw])
print(json.dumps({"rss_after_import_mb": imported, "rss_after_load_mb": loaded, "peak_rss_mb": rss(),
                  "seconds_to_loaded": load_s, "predictions": len(raws)}))
"""


def serving_memory(run_dir: Path, raws: list, env: dict | None = None) -> dict:
    """Peak RSS of serving a finished run: a fresh interpreter imports the suite, loads the run through
    ``Predictor`` (as the CLI, the app and a server do) and predicts each raw input one at a time. ``env``
    adds environment variables for that process."""
    import pickle

    run_dir = Path(run_dir)
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump(list(raws), f)
    try:
        proc = subprocess.run([sys.executable, "-c", _SERVE, str(run_dir.parent), run_dir.name, f.name],
                              capture_output=True, text=True, timeout=1800, cwd=ROOT,
                              env={**os.environ, **(env or {})})
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"serving subprocess failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def serving_memory_line(serve: dict, train_rss_mb: float | None) -> str:
    line = (f"Serving memory (a fresh process loads the run through `Predictor` and predicts {serve['predictions']} "
            f"examples one at a time): peak RSS **{serve['peak_rss_mb']:.0f} MB** (suite imported "
            f"{serve['rss_after_import_mb']:.0f} MB; TensorFlow and the model loaded {serve['rss_after_load_mb']:.0f} MB, "
            f"{serve['seconds_to_loaded']:.1f} s after start).")
    if train_rss_mb:
        line += f" Training: peak RSS of the benchmark process when training ended **{train_rss_mb:.0f} MB**."
    return line


def save_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def load_results(name: str) -> dict:
    """What ``save_results(name, ...)`` wrote (a module's ``--render`` redraws its section from it)."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def train_with_snapshots(task, data: str, overrides: dict, *, name: str, home: Path, **train_kwargs) -> dict:
    """Train through the suite's trainer, keeping each epoch's weights, so test accuracy against training
    time can be scored afterwards without charging the scoring to training time. ``train_kwargs`` go to
    ``train`` (e.g. a prepared ``bundle``)."""
    import shutil

    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    store = RunStore(home)
    snaps = home / "snapshots" / name  # several runs may share one home
    snaps.mkdir(parents=True, exist_ok=True)
    points: list[dict] = []
    state: dict = {}

    def listener(event):
        if event["event"] == "run_start":
            state["start"], state["cpu"] = time.perf_counter(), time.process_time()
            state["run"] = store.get(event["run"])
        elif event["event"] == "epoch_end":
            # BackupAndRestore has written this epoch's weights before the monitor emits epoch_end.
            now, cpu = time.perf_counter(), time.process_time()
            snap = snaps / f"epoch{event['epoch']}.weights.h5"
            shutil.copy(state["run"].file("backup") / "latest.weights.h5", snap)
            points.append({"epoch": event["epoch"], "seconds": now - state["start"], "epoch_seconds": event["seconds"],
                           "cpu_seconds": cpu - state["cpu"], "snapshot": str(snap)})
            state["start"] += time.perf_counter() - now  # the copy is not training time
            state["cpu"] += time.process_time() - cpu

    t0 = time.perf_counter()
    run = train(task, data, overrides, name=name, store=store, options=TrainOptions(tensorboard=False),
                listeners=[listener], **train_kwargs)
    wall = time.perf_counter() - t0
    if run.status != "completed":
        raise RuntimeError(f"suite run ended {run.status}: {run.info.get('error')}")
    return {"run": run, "points": points, "wall_seconds": wall, "rss_after_train_mb": peak_rss_mb(),
            "config": run.config, "counts": run.info.get("counts", {})}


def plot_accuracy_curves(curves: dict[str, list[dict]], path: Path, *, bar: float | dict[str, float], ylabel: str,
                         title: str, key: str = "test_accuracy", scale: float = 100.0, unit: str = "%") -> None:
    """Test quality (``key`` x ``scale``; accuracy in % by default) against training seconds, one line per
    recipe, with the issue's bar(s) dashed (``bar``: one value, or ``{label: value}`` when protocols differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, pts in curves.items():
        ax.plot([p["seconds"] for p in pts], [scale * p[key] for p in pts], marker="o", label=label)
    bars = bar if isinstance(bar, dict) else {"bar": bar}
    styles = ("--", ":", "-.", (0, (1, 3)))
    for i, (label, value) in enumerate(bars.items()):
        ax.axhline(value, color="grey", linestyle=styles[i % len(styles)], linewidth=1, label=f"{label}: {value:g}{unit}")
    ax.set_xlabel("training time (s, this machine)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def batched_accuracy(forward, x, y, batch: int = 1000) -> float:
    """Top-1 accuracy of a compiled forward over ``x`` in batches (for accuracy-against-time curves)."""
    import numpy as np

    preds = [np.asarray(forward(x[i:i + batch])).argmax(axis=1) for i in range(0, len(x), batch)]
    return float((np.concatenate(preds) == y).mean())


def timed_snapshots(folder: Path, every_s: float, *, budget_s: float | None = None, at: tuple[float, ...] = ()):
    """A Keras callback saving the weights every ``every_s`` seconds of training (and at the end) so quality
    against training time can be scored afterwards; the saving is not counted as training time. ``at`` gives
    the training seconds to save at instead (``every_s`` is then ignored). With ``budget_s`` it also ends
    training once that much training time is spent. Points: ``callback.points``."""
    import keras

    def next_due(due: float) -> float:
        later = [t for t in at if t > due]
        return (min(later) if later else float("inf")) if at else due + every_s

    class _Snapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.points: list[dict] = []
            folder.mkdir(parents=True, exist_ok=True)

        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0
            self.due = min(at) if at else every_s

        def seconds(self) -> float:
            return time.perf_counter() - self.start - self.paused

        def _save(self):
            now, spent = time.perf_counter(), self.seconds()
            path = folder / f"snap{len(self.points)}.weights.h5"
            self.model.save_weights(str(path))
            self.points.append({"seconds": round(spent, 2), "step": int(self.model.optimizer.iterations),
                                "snapshot": str(path)})
            self.paused += time.perf_counter() - now

        def on_train_batch_end(self, batch, logs=None):
            spent = self.seconds()
            if spent >= self.due:
                self.due = next_due(self.due)
                self._save()
            if budget_s is not None and spent >= budget_s:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if not self.points or self.points[-1]["step"] != int(self.model.optimizer.iterations):
                self._save()

    return _Snapshots()
