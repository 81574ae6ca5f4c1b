"""Shared helpers of the benchmark harness.

Each benchmark module ``bench/<name>.py`` defines ``run(quick: bool) -> str``: it measures, writes any plots to
``docs/bench_<name>_*.png``, saves raw figures with :func:`save_results`, and returns a Markdown section for
``docs/BENCHMARKS.md``. ``python -m bench.run [--quick|--full] [--only NAME]`` runs the modules, each in its own
process so that memory figures do not mix, and assembles the document.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
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


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_python(code: str, *, timeout: float = 3600) -> dict:
    """Run ``code`` in a fresh interpreter that prints one JSON line last; return it plus its peak RSS."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
