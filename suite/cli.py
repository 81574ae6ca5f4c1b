"""The ``suite`` command line. Every user mistake ends in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import click

from suite.errors import RunError, SuiteError, one_line
from suite.outputs import is_text, text_of

EXIT_USER = 2
EXIT_INTERNAL = 1


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _registry():
    from suite.registry import get_registry

    return get_registry()


class ProgressPrinter:
    """Renders the run's event stream: one rewritten line per step on a terminal, a line per epoch otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "message":
            self._line(e["text"])
        elif kind == "step" and self.tty:
            steps = e.get("steps") or 0
            done = e.get("step", 0)
            width = 24
            filled = int(width * done / steps) if steps else 0
            bar = "#" * filled + "." * (width - filled)
            loss = e.get("metrics", {}).get("loss")
            eta = e.get("eta_s")
            text = (f"\repoch {e['epoch']} [{bar}] {done}/{steps or '?'} loss {loss:.4f} "
                    f"{e.get('examples_per_sec', 0):.0f} ex/s" + (f" eta {eta:.0f}s" if eta is not None else ""))
            self.stream.write(text[:120].ljust(100))
            self.stream.flush()
        elif kind == "epoch_end":
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in e.get("metrics", {}).items())
            self._line(f"epoch {e['epoch']}/{e['epochs']} {e.get('seconds', 0):.1f}s  {metrics}")
        elif kind == "run_start" and e.get("resumed"):
            self._line(f"resuming run {e['run']}")

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-task-suite")
@click.option("-v", "--verbose", is_flag=True,
              help="Show TensorFlow's own log lines and library warnings (also SUITE_LOG_LEVEL=info).")
def cli(verbose):
    """Train, evaluate, try and export Keras task models. See `suite COMMAND --help`."""
    from suite import quiet

    quiet.install(verbose=verbose or quiet.verbose_from_env())


# ---- plugins --------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", is_flag=True, help="Probe each plugin in its own subprocess with a timeout.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds per plugin for --check.")
@click.option("--long", "long_", is_flag=True, help="Each plugin's data layouts, TFDS examples and upload types.")
def plugins(as_json, check, timeout, long_):
    """List installed task plugins and any that failed to load."""
    if check:
        from suite.plugin_check import check_all

        results = check_all(timeout=timeout)
        if as_json:
            _echo_json(results)
        else:
            for r in results:
                mark = "ok  " if r["ok"] else "FAIL"
                click.echo(f"{mark} {r['entry_point']:<24} {r['detail']}")
        if not all(r["ok"] for r in results):
            sys.exit(EXIT_USER)
        return
    reg = _registry()
    rows = [_plugin_row(t, reg.source(t.name)) for t in reg.tasks()]
    failures = [f.to_dict() for f in reg.failures]
    if as_json:
        _echo_json({"plugins": rows, "failed": failures})
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {r['input']:<6} {r['output']:<8} {r['title']}")
        if long_:
            _echo_plugin_details(r)
        for line in r["retired"]:
            click.echo(f"    note: defines {line}")
    for f in failures:
        click.echo(f"FAILED {f['name']:<17} {f['reason']}")
    if not rows and not failures:
        click.echo("no plugins installed")


def _plugin_row(task, source: str) -> dict:
    return {"name": task.name, "title": task.title, "description": task.description, "input": task.input_kind,
            "output": task.output_kind, "source": source, "synthetic_sample": task.sample_synthetic,
            "sample": task.sample_description, "data_formats": task.data_formats,
            "tfds_examples": list(task.tfds_examples), "upload_types": list(task.upload_types),
            "retired": type(task).retired_parts()}


def _echo_plugin_details(row: dict) -> None:
    import textwrap

    def para(label: str, text: str) -> None:
        if text:
            click.echo(textwrap.fill(text, width=100, initial_indent=f"    {label}: ", subsequent_indent=" " * 6))

    para("what", row["description"])
    para("data", row["data_formats"])
    para("tfds", ", ".join(row["tfds_examples"]))
    para("uploads", ", ".join(row["upload_types"]))
    para("sample", row["sample"])
    para("from", row["source"])


@cli.command()
@click.argument("task")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def settings(task, as_json):
    """The config fields of TASK that `--set KEY=VALUE` takes: default, unit, choices and what each does."""
    import textwrap

    cls = _registry().get(task).config_class
    fields = cls.describe()
    if as_json:
        _echo_json(fields)
        return
    doc = cls.__doc__ or ""
    if doc and not doc.startswith(f"{cls.__name__}("):  # dataclasses write their signature where none is given
        click.echo(" ".join(doc.split("\n\n")[0].split()) + "\n")
    for f in fields:
        default = ",".join(map(str, f["default"])) if isinstance(f["default"], list) else f["default"]
        unit = f" {f['unit']}" if f["unit"] else ""
        choices = f" (one of {', '.join(map(str, f['choices']))})" if f["choices"] else ""
        click.echo(f"{f['name']}={default}{unit}{choices}")
        if f["help"]:
            click.echo(textwrap.fill(f["help"], width=100, initial_indent="    ", subsequent_indent="    "))


# ---- train ----------------------------------------------------------------------------------------
@cli.command()
@click.argument("task", required=False)
@click.option("--data", "data", default="sample", show_default=True,
              help="'sample', 'tfds:NAME[/CONFIG]' or a local path.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of config values.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config value (repeatable; `suite settings TASK` lists them).")
@click.option("--epochs", type=int, help="Shortcut for --set epochs=N.")
@click.option("--name", help="Run name (default: derived from task, data and config).")
@click.option("--resume", help="Continue this run (folder or name) from its last finished epoch.")
@click.option("--strategy", default="auto", show_default=True,
              type=click.Choice(["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"]))
@click.option("--devices", type=int, default=0, help="Split the CPU into N logical devices.")
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]))
@click.option("--jit/--no-jit", "jit", default=False, show_default=True, help="XLA-compile the train step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON at the end.")
def train(task, data, config_file, sets, epochs, name, resume, strategy, devices, precision, jit, seed, as_json):
    """Train TASK on --data. Rerunning the same command after a crash continues the run."""
    from suite.config import parse_overrides
    from suite.trainer import TrainOptions
    from suite.trainer import train as run_train

    overrides = parse_overrides(list(sets))
    if epochs is not None:
        overrides["epochs"] = epochs
    if task is None:
        if not resume:
            raise SuiteError("give a TASK to train (see `suite plugins`) or --resume RUN")
        from suite.runstore import RunStore

        task = RunStore().get(resume).task_name
    options = TrainOptions(strategy=strategy, devices=devices, precision=precision, jit_compile=jit, seed=seed)
    run = run_train(task, data, overrides, config_file=config_file, name=name, resume=resume, options=options,
                    listeners=[ProgressPrinter()])
    summary = run.summary()
    if as_json:
        _echo_json(summary)
        return
    if run.status == "stopped":
        click.echo(f"run {run.name} stopped: `suite train --resume {run.name}` continues it")
        return
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items() if k != "examples")
    click.echo(f"run {run.name} {run.status}  {metrics}")
    click.echo(f"folder: {run.path}")


# ---- distill --------------------------------------------------------------------------------------
@cli.command()
@click.argument("teacher", metavar="TEACHER_RUN")
@click.option("--student", default=None, help="A student the plugin declares (default: its first).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a student config value, or temperature=T / alpha=A (repeatable).")
@click.option("--epochs", type=int, help="Shortcut for --set epochs=N.")
@click.option("--name", help="Student run name (default: TEACHER-student-HASH).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON at the end.")
def distill(teacher, student, sets, epochs, name, as_json):
    """Train a small student on a finished classifier run's soft outputs (knowledge distillation)."""
    from suite.config import parse_overrides
    from suite.distill import distill as run_distill

    overrides = parse_overrides(list(sets))
    if epochs is not None:
        overrides["epochs"] = epochs
    run = run_distill(teacher, overrides, student=student, name=name, listeners=[ProgressPrinter()])
    summary = run.summary()
    if as_json:
        _echo_json(summary)
        return
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items() if k != "examples")
    click.echo(f"student {run.name} of {teacher} {run.status}  {metrics}")
    click.echo(f"folder: {run.path}")


# ---- eval -----------------------------------------------------------------------------------------
@cli.command("eval")
@click.argument("run_ref", metavar="RUN")
@click.option("--data", "data", default=None, help="Evaluate on this source's test split (default: the run's).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val", "train", "all"]),
              help="all: every labelled example of the source (a new file or folder scored whole).")
@click.option("--limit", type=int, default=0, help="Score only the first N examples.")
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(run_ref, data, split, limit, as_json):
    """Evaluate a run's model on a split of its data (or of --data)."""
    from suite.evaluate_run import evaluate_run
    from suite.progress import StderrBar

    bar = StderrBar("evaluating")
    try:
        report = evaluate_run(run_ref, data=data, split=split, limit=limit, progress=bar)
    finally:
        bar.close()
    if as_json:
        _echo_json(report)
        return
    for key, value in report.items():
        if isinstance(value, float):
            click.echo(f"{key:<20} {value:.4f}")
        elif isinstance(value, int):
            click.echo(f"{key:<20} {value}")


# ---- predict --------------------------------------------------------------------------------------
@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--text", "as_text", is_flag=True, help="Take every INPUT as literal text, even one that looks "
              "like a file name.")
@click.option("--json", "as_json", is_flag=True)
def predict(run_ref, inputs, top_k, as_text, as_json):
    """Predict with a run's model.

    INPUT is a file, '-' for standard input, or literal text (text and table tasks). An INPUT that looks like a
    file name (photo.jpg, ./notes.txt) but does not exist is an error, not text: pass --text to mean it. Put
    '--' before inputs that start with '-' (`suite predict RUN -- -1.5,2,0.3`).
    """
    from suite.predictor import Predictor

    predictor = Predictor(run_ref)
    raws = [item if as_text else _read_cli_input(predictor.task, item) for item in inputs]
    results = predictor.predict(raws, top_k=top_k)
    if as_json:
        _echo_json([{"input": i, **r} for i, r in zip(inputs, results, strict=True)])
        return
    for item, result in zip(inputs, results, strict=True):
        if is_text(result):
            click.echo(f"{item}\t{text_of(result)}")
        else:
            tops = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result.get("top", []))
            click.echo(f"{item}\t{result['label']}\t({tops})")
        for note in result.get("notices", []):
            click.echo(f"  note: {note}", err=True)


def _read_cli_input(task, item: str):
    from suite.predictor import read_input_file

    if item == "-":
        data = sys.stdin.buffer.read()
        return data.decode("utf-8", errors="replace") if task.input_kind in ("text", "table") else data
    path = Path(item)
    try:
        is_file = path.is_file()
    except OSError:  # a long sentence given as literal text is too long to be a file name
        is_file = False
    if is_file:
        data = read_input_file(path)
        return data.decode("utf-8", errors="replace") if task.input_kind == "text" else data
    if task.input_kind in ("text", "table") and not looks_like_path(item):
        return item
    hint = " (pass --text to predict on it as text)" if task.input_kind in ("text", "table") else ""
    raise SuiteError(f"input file not found: {item}{hint}")


def looks_like_path(item: str) -> bool:
    """A single word with a folder separator, a leading ./ or ~, or a short file extension (photo.jpg,
    reviews.tsv): meant as a file, not as text. Sentences, numbers (3.5) and CSV rows (5.1,3.5) are text."""
    import re

    if not item or any(c.isspace() for c in item) or "," in item:
        return False
    if item.startswith(("./", "../", "~", "/")) or "/" in item or "\\" in item:
        return True
    return re.fullmatch(r"[^.]+\.[A-Za-z][A-Za-z0-9]{0,4}", item) is not None


# ---- export ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--format", "fmt", default="all", show_default=True,
              help="keras, saved_model, tflite, onnx or all (comma-separated for several).")
@click.option("--quantize", default="none", show_default=True,
              type=click.Choice(["none", "float16", "dynamic", "int8"]))
@click.option("--examples", type=int, default=200, show_default=True, help="Held-out examples to verify on.")
@click.option("--json", "as_json", is_flag=True)
def export(run_ref, fmt, quantize, examples, as_json):
    """Export a run's model and verify each artifact against the Keras model."""
    from suite.export import export_run

    reports = export_run(run_ref, formats=fmt, quantize=quantize, examples=examples,
                         progress=lambda text: click.echo(text, err=True))
    if as_json:
        _echo_json(reports)
        return
    for name, rep in reports.items():
        if rep.get("supported") is False:
            click.echo(f"{name:<12} not exported: {rep['reason']}")
            continue
        ver = rep.get("verification", {})
        bits = [f"{rep.get('size_bytes', 0) / 1e6:.2f} MB"]
        if "top1_agreement" in ver:
            bits.append(f"top-1 agreement {ver['top1_agreement']:.4f}")
        if "max_abs_diff" in ver:
            bits.append(f"max prob diff {ver['max_abs_diff']:.2e}")
        if ver.get("metric") is not None:
            bits.append(f"{ver['metric_name']} {ver['metric']:.4f} (keras {ver.get('keras_metric', float('nan')):.4f})")
        click.echo(f"{name:<12} {rep.get('path', '')}  " + ", ".join(bits))
        for note in rep.get("notes", []):  # inputs, quantization choices, fallbacks: what a deployer must know
            click.echo(f"{'':<12} - {note}")
    click.echo(f"code that loads each file and predicts: suite snippets {run_ref}", err=True)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--format", "fmt", default=None, help="python, saved_model, tflite or onnx (default: all).")
@click.option("--input", "given", default=None, help="The INPUT the code starts with (a path or the text).")
def snippets(run_ref, fmt, given):
    """Print copy-paste Python that loads the run's model and each exported file, and predicts one input."""
    from suite.runstore import RunStore
    from suite.usage import FORMATS
    from suite.usage import snippets as make

    if fmt is not None and fmt not in FORMATS:
        raise click.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    codes = make(RunStore().get(run_ref), given)
    if fmt is not None:
        if fmt not in codes:
            raise RunError(f"no {fmt} snippet for run {run_ref!r}: export it first (`suite export {run_ref} "
                           f"--format {fmt}`); available: {', '.join(codes)}")
        codes = {fmt: codes[fmt]}
    for name, code in codes.items():
        click.echo(f"# ---- {name} " + "-" * (60 - len(name)) + "\n" + code)


# ---- import-model ---------------------------------------------------------------------------------
@cli.command("import-model")
@click.argument("path", type=click.Path(exists=False))
@click.option("--task", "task_name", required=True, help="The task plugin whose inputs the model takes.")
@click.option("--name", required=True, help="Name of the new run.")
@click.option("--classes", default=None, help="Comma-separated class names of a classifier's outputs.")
@click.option("--meta", "meta_file", type=click.Path(dir_okay=False), default=None,
              help="JSON file of task metadata the plugin needs to decode inputs.")
@click.option("--timeout", type=float, default=None, help="Seconds allowed to load the model (child process).")
@click.option("--memory-mb", type=int, default=None, help="Memory limit of the loading process.")
@click.option("--json", "as_json", is_flag=True)
def import_model(path, task_name, name, classes, meta_file, timeout, memory_mb, as_json):
    """Import a .keras model made elsewhere as a new run, after checking it (see docs/SECURITY.md)."""
    import dataclasses as _dc

    from suite.model_import import ImportLimits, import_keras_model

    limits = ImportLimits()
    if timeout is not None:
        limits = _dc.replace(limits, timeout_s=timeout)
    if memory_mb is not None:
        limits = _dc.replace(limits, memory_mb=memory_mb)
    meta = None
    if meta_file:
        try:
            meta = json.loads(Path(meta_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SuiteError(f"cannot read --meta {meta_file}: {one_line(err)}") from None
        if not isinstance(meta, dict):
            raise SuiteError(f"--meta {meta_file} must hold a JSON object")
    class_names = [c.strip() for c in classes.split(",")] if classes else None
    run = import_keras_model(path, name=name, task=task_name, class_names=class_names, meta=meta, limits=limits)
    if as_json:
        _echo_json(run.summary())
        return
    click.echo(f"imported {Path(path).name} as run {run.name} ({run.task_name})")
    click.echo(f"folder: {run.path}")


# ---- runs -----------------------------------------------------------------------------------------
@cli.group("data")
def data_group():
    """Look at and pack class-folder data sources (`suite data scan|pack`)."""


def _task_files(source: str, task_name: str, val_fraction: float, test_fraction: float):
    """The splits of a class-folder source as the task's streamed loader would read them, with progress."""
    from pathlib import Path

    from suite.errors import DataSourceError
    from suite.registry import get
    from suite.streaming import class_folder_splits

    task = get(task_name)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DataSourceError(f"{root} is not a folder of class folders")
    exts = tuple(f".{e.lstrip('.')}" for e in (getattr(task, "upload_types", None) or ()))
    if not exts:
        raise DataSourceError(f"task {task_name!r} declares no file types (upload_types) to pack")
    return class_folder_splits(root, exts, val_fraction=val_fraction, test_fraction=test_fraction)


@data_group.command("scan")
@click.argument("source")
@click.option("--task", "task_name", required=True, help="The task whose file types to list.")
@click.option("--json", "as_json", is_flag=True)
def data_scan(source, task_name, as_json):
    """List a class-folder source's files per split and class, without decoding any (names only)."""
    import time

    t0 = time.perf_counter()
    splits = _task_files(source, task_name, 0.1, 0.1)
    seconds = time.perf_counter() - t0
    summary = {"splits": {k: len(v) for k, v in splits.items()}, "seconds": round(seconds, 3),
               "classes": sorted({c for v in splits.values() for _, c in v})}
    if as_json:
        _echo_json(summary)
        return
    total = sum(summary["splits"].values())
    click.echo(f"{total} files in {len(summary['classes'])} classes, listed in {seconds:.2f} s: "
               + ", ".join(f"{k} {n}" for k, n in summary["splits"].items()))


@data_group.command("pack")
@click.argument("source")
@click.argument("out")
@click.option("--task", "task_name", required=True, help="The task whose file types to pack.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Validation share carved from train when the source has no val folder.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Test share when the source has no split folders.")
@click.option("--json", "as_json", is_flag=True)
def data_pack(source, out, task_name, val_fraction, test_fraction, as_json):
    """Pack a class-folder source into sharded TFRecord files (a data source like any other)."""
    from pathlib import Path

    from suite import packed

    splits = _task_files(source, task_name, val_fraction, test_fraction)

    def progress(done, total):
        click.echo(f"\rpacking {done}/{total} files", nl=False, err=True)

    manifest = packed.pack(splits, Path(out).expanduser(), progress=None if as_json else progress)
    if as_json:
        _echo_json(manifest)
        return
    click.echo("", err=True)
    click.echo(f"packed {sum(manifest['counts'].values())} files into {out} in {manifest['seconds']:.1f} s: "
               + ", ".join(f"{k} {n} ({len(manifest['shards'][k])} shard(s))" for k, n in manifest["counts"].items()))


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--task", default=None, help="Only runs of this task.")
@click.pass_context
def runs(ctx, as_json, task):
    """List runs (newest first); `suite runs show|compare|delete` for more."""
    if ctx.invoked_subcommand is not None:
        return
    from suite.runstore import RunStore

    rows = [r.summary() for r in RunStore().list(task=task)]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"no runs in {RunStore().root}")
    for r in rows:
        metric = r["metrics"].get("accuracy", r["metrics"].get("bleu"))
        shown = f"{metric:.4f}" if isinstance(metric, float) else "-"
        click.echo(f"{r['name']:<36} {r['task']:<22} {r['status']:<10} {shown:<8} {r['created']}")


@runs.command("show")
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_ref, as_json):
    """Show one run: info, config and test metrics."""
    from suite.runstore import RunStore

    run = RunStore().get(run_ref)
    data = {"info": run.info, "config": run.config, "metrics": run.metrics}
    if as_json:
        _echo_json(data)
        return
    readme = run.file("README.md")
    click.echo(readme.read_text(encoding="utf-8") if readme.exists() else json.dumps(data, indent=2, default=str))


@runs.command("compare")
@click.argument("refs", nargs=-1, required=True, metavar="RUN...")
@click.option("--json", "as_json", is_flag=True)
def runs_compare(refs, as_json):
    """Compare runs side by side: config differences and test metrics."""
    from suite.runstore import RunStore

    rows = RunStore().compare(list(refs))
    if as_json:
        _echo_json(rows)
        return
    keys = sorted({k for r in rows for k in r["config"]})
    differing = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in rows}) > 1]
    metrics = sorted({k for r in rows for k in r["metrics"]})
    header = ["", *[r["name"] for r in rows]]
    table = [header, ["status", *[r["status"] for r in rows]]]
    table += [["serving ms (p50)", *[str(r.get("serving_latency_ms_p50") or "-") for r in rows]]]
    table += [[k, *[str(r["config"].get(k)) for r in rows]] for k in differing]
    table += [[m, *[f"{r['metrics'].get(m, float('nan')):.4f}" for r in rows]] for m in metrics]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


@runs.command("delete")
@click.argument("refs", nargs=-1, required=True, metavar="RUN...")
@click.option("--yes", is_flag=True, help="Do not ask.")
def runs_delete(refs, yes):
    """Delete runs (their folders)."""
    from suite.runstore import RunStore

    store = RunStore()
    targets = [store.get(r) for r in refs]
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete {', '.join(t.name for t in targets)}?", abort=True)
    for t in targets:
        store.delete(t)
        click.echo(f"deleted {t.name}")


# ---- app, scaffold, launch ------------------------------------------------------------------------
@cli.command()
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def app(port, address, streamlit_args):
    """Start the Streamlit app."""

    from suite.paths import app_launch_spec

    # Server settings as flags, so XSRF, CORS, upload limits... apply whatever the current directory.
    spec = app_launch_spec()
    cmd = [sys.executable, "-m", "streamlit", "run", spec["entry"], *spec["flags"], "--server.port",
           str(port), "--server.address", address, *streamlit_args]
    sys.exit(run_process_group(cmd))


def run_process_group(cmd: list[str], grace_s: float = 20.0) -> int:
    """Run ``cmd`` in a process group of its own and forward SIGTERM, SIGINT and SIGHUP to the whole group
    (the server and the helpers it starts, such as background sample training); when the command ends, what
    is left of its group is stopped too, so nothing outlives it on its port."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, start_new_session=True)

    def group_signal(sig) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def forward(signum, frame) -> None:
        group_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    group_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.2)
    group_signal(signal.SIGKILL)
    return code


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False))
def new_plugin(name, directory):
    """Scaffold a pip-installable plugin package NAME with its tests (a working classifier to adapt)."""
    from suite.scaffold import scaffold_plugin

    path = scaffold_plugin(name, Path(directory))
    click.echo(f"created {path}")
    click.echo(f"next: pip install -e {path} && pytest {path}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--workers", type=int, required=True, help="Number of local worker processes.")
@click.option("--port", type=int, default=0, help="First port (default: free ports).")
@click.option("--timeout", type=float, default=0, help="Give up after this many seconds (0: never).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def launch(workers, port, timeout, command):
    """Run `suite COMMAND...` as N local workers with TF_CONFIG on 127.0.0.1 (try multi-worker here)."""
    from suite.launch import launch_local

    sys.exit(launch_local(list(command), workers=workers, port=port, timeout=timeout or None))


def main(argv=None) -> None:
    """Entry point: turns our errors into one line and an exit code."""
    debug = os.environ.get("SUITE_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="suite", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_USER)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except SuiteError as err:
        if debug:
            raise
        click.echo(f"error: {one_line(err)}", err=True)
        sys.exit(EXIT_USER)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        if debug:
            raise
        click.echo(f"error: unexpected {one_line(err)} (SUITE_DEBUG=1 shows the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    finally:
        gc.collect()  # tear down tf.data iterators while Python is whole, not during shutdown (tensorflow#21277)


if __name__ == "__main__":
    main()
