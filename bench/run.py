"""Run the benchmarks and regenerate docs/BENCHMARKS.md.

    python -m bench.run --quick            # minutes: the same code on subsets
    python -m bench.run --full             # the figures the docs quote
    python -m bench.run --quick --only trainer_overhead,machine

Each module runs in its own process (so peak-memory figures do not mix) and returns a Markdown section; the
sections are kept in bench/results/<name>.md and assembled in a fixed order, so running one module updates
its section and keeps the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys

from bench.common import DOCS, RESULTS, ROOT

MODULES = ["machine", "trainer_overhead", "image_classification", "sentiment", "translation", "translation_curve",
           "speech_commands", "export", "app"]


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
    args = parser.parse_args(argv)
    quick = not args.full
    names = [n for n in (args.only.split(",") if args.only else MODULES) if n]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"== {name} ({'quick' if quick else 'full'})", flush=True)
        section = run_module(name, quick)
        (RESULTS / f"{name}.md").write_text(section)
        print(section, flush=True)
    write_doc()
    return 0


def write_doc() -> None:
    parts = [
        "# Benchmarks",
        "",
        "Every figure below was measured by the command named in its section, on the machine it names, and",
        "written here by `python -m bench.run` (`make bench` for the full run, `make bench-quick` for the",
        "few-minute version of the same code). The machine is shared and noisy, so comparisons are made side",
        "by side in one run and quoted as ratios.",
        "",
        f"_Assembled {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    for name in MODULES:
        path = RESULTS / f"{name}.md"
        if path.exists():
            parts += [path.read_text().strip(), ""]
        else:
            parts += [f"## {name}", "", "Not measured yet: `python -m bench.run --only " + name + "`.", ""]
    (DOCS / "BENCHMARKS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())
