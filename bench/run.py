"""Run the benchmarks and regenerate docs/BENCHMARKS.md.

    python -m bench.run --quick            # the same code on subsets, two modules at a time
    python -m bench.run --full             # the figures the docs quote
    python -m bench.run --quick --only trainer_overhead,machine

Each module runs in its own process (so peak-memory figures do not mix) and returns a Markdown section; the
sections are kept in bench/results/<name>.md and assembled in a fixed order, so running one module updates
its section and keeps the others. A quick run keeps its sections apart (bench/results/quick/, assembled in
docs/BENCHMARKS_QUICK.md), so checking the harness never replaces the figures the docs quote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import summary
from bench.common import DOCS, RESULTS, ROOT

MODULES = ["machine", "trainer_overhead", "image_classification", "cifar10", "photos", "streaming", "sentiment", "translation", "translation_curve",
           "speech_commands", "export", "distill", "sample_models", "app"]
ALONE = ("machine", "app")
QUICK_ORDER = ["cifar10", "distill", "photos", "sample_models", "streaming", "speech_commands", "export", "translation_curve", "trainer_overhead", "translation", "sentiment",
               "image_classification"]  # the quick run's modules, longest first


def run_module(name: str, quick: bool) -> str:
    code = (
        f"import sys, importlib; m = importlib.import_module('bench.{name}'); "
        f"sys.stdout.write('\\n@@SECTION@@\\n' + m.run(quick={quick!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return f"## {name}\n\nThis benchmark failed in the last run: `{' / '.join(tail)}`\n"
    return proc.stdout.split("@@SECTION@@", 1)[-1].strip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated module names")
    parser.add_argument("--jobs", type=int, default=0,
                        help="modules run at once (default: 2 for --quick, 1 for --full, whose figures the docs quote)")
    args = parser.parse_args(argv)
    quick = not args.full
    names = [n for n in (args.only.split(",") if args.only else MODULES) if n]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(MODULES)}")
    jobs = max(1, args.jobs or (2 if quick else 1))
    sections = sections_dir(quick)
    sections.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lock = threading.Lock()

    def one(name: str) -> None:
        t = time.perf_counter()
        section = run_module(name, quick)
        (sections / f"{name}.md").write_text(section)
        with lock:
            print(f"== {name} ({'quick' if quick else 'full'})\n{section}\n== {name} took "
                  f"{time.perf_counter() - t:.0f} s", flush=True)

    # `machine` (the matmul peak) first and `app` (browser timings) last, each with the machine to itself; the
    # others share it when jobs > 1 (quick), longest first so the lanes end together. A full run, whose figures
    # the docs quote, keeps one module at a time.
    middle = [n for n in names if n not in ALONE]
    if jobs > 1:
        middle.sort(key=QUICK_ORDER.index)
    if "machine" in names:
        one("machine")
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, middle))
    if "app" in names:
        one("app")
    if quick and names == MODULES:  # the whole quick run's wall time, quoted in its document
        (sections / "seconds.txt").write_text(json.dumps({"seconds": round(time.perf_counter() - started),
                                                          "jobs": jobs}) + "\n")
    write_doc(quick)
    print(f"== all done in {time.perf_counter() - started:.0f} s; wrote {doc_path(quick).relative_to(ROOT)}", flush=True)
    return 0


def sections_dir(quick: bool = False) -> Path:
    return RESULTS / "quick" if quick else RESULTS


def doc_path(quick: bool = False) -> Path:
    return DOCS / ("BENCHMARKS_QUICK.md" if quick else "BENCHMARKS.md")


def write_doc(quick: bool = False) -> None:
    """Assemble the kept sections in a fixed order (full: docs/BENCHMARKS.md; quick: docs/BENCHMARKS_QUICK.md)."""
    total = sections_dir(quick) / "seconds.txt"
    last = json.loads(total.read_text()) if quick and total.exists() else None
    parts = [
        "# Benchmarks" + (" (quick)" if quick else ""),
        "",
        "Every figure below was measured by the command named in its section, on the machine it names, and",
        "written here by `python -m bench.run` (`make bench` for the full run; `make bench-quick` for the",
        "same code on subsets, minutes: docs/BENCHMARKS_QUICK.md). The machine is shared and noisy, so",
        "comparisons are made side by side in one run and quoted as ratios.",
        "",
        *(["This is the quick run: subsets and fewer epochs, to check the harness end to end. Its figures are",
           "not the project's; those are in [BENCHMARKS.md](BENCHMARKS.md)."
           + (f" The whole quick run (`make bench-quick`) took {last['seconds'] / 60:.1f} minutes here, "
              f"{last['jobs']} modules at a time (`machine` and `app` alone)." if last else ""),
           ""] if quick else []),
        f"_Assembled {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    if not quick:
        parts += ["## At a glance", "", summary.table(RESULTS, details="the sections below"), ""]
    flag = " --quick" if quick else ""
    for name in MODULES:
        path = sections_dir(quick) / f"{name}.md"
        if path.exists():
            parts += [path.read_text().strip(), ""]
        else:
            parts += [f"## {name}", "", f"Not measured yet: `python -m bench.run --only {name}{flag}`.", ""]
        notes = ROOT / "bench" / "notes" / f"{name}.md"  # hand-written: how defaults were chosen (kept as is)
        if notes.exists() and not quick:
            parts += [notes.read_text().strip(), ""]
    doc_path(quick).write_text("\n".join(parts))
    if not quick:  # the README quotes the same headline figures
        readme = ROOT / "README.md"
        readme.write_text(summary.replace_block(readme.read_text(), summary.table(RESULTS)))


if __name__ == "__main__":
    raise SystemExit(main())
