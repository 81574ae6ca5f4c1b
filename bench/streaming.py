"""Benchmark: data larger than memory (suite/streaming.py, suite/packed.py).

1. Bounded memory: synthetic folders of 10,000 and 100,000 JPEG files (shapes on noise, 128x128, 10 classes)
   each train one epoch of the default image model streamed from the files (``cache=none``) in a fresh
   process; peak RSS (VmHWM) of each, and the folder scan time. The same for 10,000 and 100,000 WAV clips
   (1 s at 16 kHz, 10 "words" of tones and noise) and the default speech model.
2. CIFAR-10 throughput: one epoch of the same fixed model from memory, streamed from the JPEG files, from a disk
   cache, and from a packed TFRecord folder, each in a fresh process; training images/s side by side.

``python -m bench.run --only streaming [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, machine, md_table, save_results, shared_data

NAME = "streaming"

_TRAIN = """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
from suite.runstore import RunStore
from suite.trainer import TrainOptions, train
from suite.events import iter_events
t0 = time.perf_counter()
run = train(sys.argv[4], sys.argv[1], json.loads(sys.argv[2]), name="bench",
            store=RunStore(sys.argv[3]), options=TrainOptions(tensorboard=False))
wall = time.perf_counter() - t0
epochs = [e for e in iter_events(run.events_path) if e.get("event") == "epoch_end"]
starts = [e for e in iter_events(run.events_path) if e.get("event") == "run_start"]
print(json.dumps({"status": run.status, "peak_rss_mb": rss(), "wall_seconds": wall,
                  "epoch_seconds": sum(e["seconds"] for e in epochs), "train": run.info["counts"]["train"],
                  "cache": run.info.get("cache"), "test_accuracy": (run.metrics.get("test") or {}).get("accuracy"),
                  "config": run.config}))
"""


def train_child(data: str, overrides: dict, home: Path, env: dict | None = None,
                task: str = "image_classification") -> dict:
    proc = subprocess.run([sys.executable, "-c", _TRAIN, data, json.dumps(overrides), str(home), task],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600,
                          env={**os.environ, **(env or {})})
    shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"training subprocess failed: {proc.stderr.strip().splitlines()[-3:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["images_per_sec"] = out["train"] / out["epoch_seconds"] if out["epoch_seconds"] else None
    return out


def synthetic_folder(root: Path, n: int, side: int = 128, classes: int = 10) -> float:
    """``n`` JPEGs of one of ``classes`` shapes (a disc, a bar... drawn by class) on noise; returns seconds."""
    from PIL import Image, ImageDraw

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    noise = rng.integers(0, 256, (64, side, side, 3), dtype=np.uint8)
    for i in range(n):
        c = i % classes
        img = Image.fromarray(noise[i % 64])
        draw = ImageDraw.Draw(img)
        x, y = rng.integers(8, side // 2, 2)
        size = int(rng.integers(side // 4, side // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (int(x), int(y), int(x) + size, int(y) + size // (1 + c % 3))
        (draw.ellipse if c < classes // 2 else draw.rectangle)(box, fill=colour)
        img.save(root / f"class{c}" / f"{i:06d}.jpg", quality=85)
    return time.perf_counter() - t0


def synthetic_wav_folder(root: Path, n: int, rate: int = 16000, classes: int = 10) -> float:
    """``n`` one-second 16-bit WAV clips in ``root/word<c>/``: a class-pitched tone burst at a random time on
    noise (the speech plugin's folder layout); returns seconds."""
    import wave

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    t = np.arange(rate) / rate
    for c in range(classes):
        (root / f"word{c}").mkdir(parents=True, exist_ok=True)
    noise = (rng.normal(0, 0.05, (64, rate))).astype(np.float32)
    for i in range(n):
        c = i % classes
        start = int(rng.integers(0, rate // 2))
        burst = np.zeros(rate, np.float32)
        burst[start:start + rate // 3] = 0.5 * np.sin(2 * np.pi * (300 + 150 * c) * t[: rate // 3])
        clip = np.clip(burst + noise[i % 64], -1, 1)
        with wave.open(str(root / f"word{c}" / f"{i:06d}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((clip * 32767).astype("<i2").tobytes())
    return time.perf_counter() - t0


def scan_seconds(root: Path, suffix: str = ".jpg") -> float:
    from suite.streaming import class_folder_splits

    t0 = time.perf_counter()
    class_folder_splits(root, (suffix,), val_fraction=0.1, test_fraction=0.1)
    return time.perf_counter() - t0


def wav_memory(sizes, work: Path) -> dict:
    """One epoch of the default speech model streamed from each synthetic WAV folder, in a fresh process."""
    out = {}
    for n in sizes:
        folder = work / f"wav{n}"
        made = synthetic_wav_folder(folder, n)
        scan = scan_seconds(folder, ".wav")
        # No synthetic voices: they would add the same 1,000 clips to both folders and need espeak-ng.
        trained = train_child(str(folder), {"epochs": 1, "cache": "none", "synthetic_voices": 0}, work / "home",
                              task="speech_commands")
        out[str(n)] = {**trained, "make_seconds": made, "scan_seconds": scan}
        shutil.rmtree(folder, ignore_errors=True)
    return out


def run(quick: bool) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sizes = (1_000, 5_000) if quick else (10_000, 100_000)
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    results: dict = {"quick": quick, "machine": machine(), "memory": {}, "cifar10": {}}
    # "wav": only the WAV folders; "cifar": only the CIFAR-10 paths; the other parts keep their last figures
    only = os.environ.get("BENCH_STREAMING", "")
    previous = ROOT / "bench" / "results" / f"{NAME}{'_quick' if quick else ''}.json"
    if only in ("wav", "cifar") and previous.exists():
        results = {**json.loads(previous.read_text()), "quick": quick}
    try:
        if only != "cifar":
            results["wav"] = wav_memory(sizes, work)
            results["wav_machine"] = machine()
        for n in sizes if not only else ():
            folder = work / f"synthetic{n}"
            made = synthetic_folder(folder, n)
            scan = scan_seconds(folder)
            out = train_child(str(folder), {"epochs": 1, "cache": "none", "test_fraction": 0.02,
                                            "val_fraction": 0.02}, work / "home")
            results["memory"][str(n)] = {**out, "make_seconds": made, "scan_seconds": scan}
            shutil.rmtree(folder, ignore_errors=True)
        cifar = shared_data("cifar10")
        if cifar is not None and only != "wav":
            results["cifar10"] = cifar_paths(cifar, work, quick)
            results["cifar10_machine"] = machine()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load"] = os.getloadavg()
    save_results(NAME + ("_quick" if quick else ""), results)
    return section(results, quick)


def cifar_paths(cifar: Path, work: Path, quick: bool) -> dict:
    """One epoch of one fixed model from each data path (the same config, so only the reading differs)."""
    from click.testing import CliRunner

    from suite.cli import cli

    fixed = {"epochs": 1, "model": "cnn_fast", "width": 32, "time_budget_minutes": 0,
             **({"max_train_examples": 5000} if quick else {})}
    packed = work / "cifar-packed"
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["data", "pack", str(cifar), str(packed), "--task", "image_classification"])
    if result.exit_code != 0:
        raise RuntimeError(f"pack failed: {result.exception}")
    pack_s = time.perf_counter() - t0
    cache_dir = work / "cache"
    out = {"pack_seconds": pack_s}
    for label, data, cache in (("memory", cifar, "memory"), ("files", cifar, "none"),
                               ("disk cache (first run builds it)", cifar, "disk"),
                               ("disk cache (reused)", cifar, "disk"), ("packed", packed, "none")):
        out[label] = train_child(str(data), {**fixed, "cache": cache}, work / "home",
                                 env={"SUITE_CACHE_DIR": str(cache_dir)})
    return out


def section(results: dict, quick: bool) -> str:
    mem = results["memory"]
    rows = [[f"{int(n):,}", f"{r['make_seconds']:.0f}", f"{r['scan_seconds']:.2f}", r["train"],
             f"{r['epoch_seconds']:.0f}", f"{r['images_per_sec']:.0f}", f"{r['peak_rss_mb']:.0f}"]
            for n, r in mem.items()]
    small, big = (mem[k] for k in list(mem)[:2])
    growth = big["peak_rss_mb"] / small["peak_rss_mb"] - 1
    cmd = f"python -m bench.run --only {NAME}" + (" --quick" if quick else " --full")
    lines = [
        "## Data larger than memory: streaming, disk cache, packed shards",
        "",
        f"Command: `{cmd}`. Machine: {results['machine']}. Load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in results['load'])}. Each training runs in a fresh process; peak RSS is "
        "its VmHWM.",
        "",
        "Synthetic JPEG folders (128x128, 10 classes of drawn shapes on noise), one epoch of the default image "
        "model streamed from the files (`--set cache=none --epochs 1`):",
        "",
        md_table(["files", "made in s", "scan s (names only)", "train images", "epoch s", "train images/s",
                  "peak RSS MB"], rows),
        "",
        f"Peak RSS grows by **{100 * growth:+.1f}%** from {list(mem)[0]} to {list(mem)[1]} files.",
        "",
    ]
    wav = results.get("wav") or {}
    if len(wav) >= 2:
        wrows = [[f"{int(n):,}", f"{r['make_seconds']:.0f}", f"{r['scan_seconds']:.2f}", r["train"],
                  f"{r['epoch_seconds']:.0f}", f"{r['images_per_sec']:.0f}", f"{r['peak_rss_mb']:.0f}"]
                 for n, r in wav.items()]
        w_small, w_big = (wav[k] for k in list(wav)[:2])
        lines += [
            "Synthetic WAV folders (1 s at 16 kHz, 16-bit, 10 classes of tone bursts on noise), one epoch of the "
            "default speech model streamed from the files (`--set cache=none --epochs 1 --set synthetic_voices=0`; "
            f"machine: {results.get('wav_machine', results['machine'])}; `BENCH_STREAMING=wav` runs this part alone):",
            "",
            md_table(["clips", "made in s", "scan s (names only)", "train clips", "epoch s", "train clips/s",
                      "peak RSS MB"], wrows),
            "",
            f"Peak RSS grows by **{100 * (w_big['peak_rss_mb'] / w_small['peak_rss_mb'] - 1):+.1f}%** from "
            f"{list(wav)[0]} to {list(wav)[1]} clips.",
            "",
        ]
    cif = results.get("cifar10") or {}
    if cif:
        base = cif["memory"]["images_per_sec"]
        crow = [[k, f"{v['images_per_sec']:.0f}", f"{v['images_per_sec'] / base:.2f}x", f"{v['epoch_seconds']:.0f}",
                 f"{v['wall_seconds']:.0f}", f"{v['peak_rss_mb']:.0f}"] for k, v in cif.items() if isinstance(v, dict)]
        lines += [
            "CIFAR-10 (`../shared/data/cifar10`), one epoch of cnn_fast width 32 (45,000 training images) from each "
            f"path, one after another in fresh processes (machine: {results.get('cifar10_machine', results['machine'])}"
            "; `BENCH_STREAMING=cifar` runs this part alone); the packed folder was written by `suite data pack` in "
            f"{cif['pack_seconds']:.0f} s:",
            "",
            md_table(["data path", "train images/s", "vs memory", "epoch s", "whole run s (load, build, eval)",
                      "peak RSS MB"], crow),
            "",
        ]
    return "\n".join(lines)
