"""The human-readable model card (``README.md``) written into every finished run folder."""

from __future__ import annotations

from suite import atomic


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cut_short(info: dict, metrics: dict) -> list[str]:
    if not metrics.get("partial"):
        return []
    return [f"- **{info.get('status', 'stopped').capitalize()} before its last epoch**: this model is the best "
            f"checkpoint so far (epoch {metrics.get('best_epoch')}); `suite train --resume {info.get('name', 'RUN')}` "
            "trains on and replaces it"]


def render_model_card(run, task) -> str:
    info, metrics, config, meta = run.info, run.metrics, run.config, run.meta
    test = metrics.get("test") or {}
    lines = [
        f"# {task.title}: run `{run.name}`",
        "",
        task.description,
        "",
        "## Training",
        "",
        f"- Task: `{task.name}`",
        f"- Data: `{info.get('data', '')}`" + (" (synthetic sample made by the project)" if info.get("synthetic") else ""),
        *([f"- Built-in sample: {task.sample_description}"]
          if info.get("data") == "sample" and getattr(task, "sample_description", "") else []),
        f"- Examples: {info.get('counts', {})}",
        f"- Strategy: {(info.get('strategy') or {}).get('kind', '')} x{info.get('replicas', 1)} "
        f"({(info.get('strategy') or {}).get('reason', '')}), precision {(info.get('precision') or {}).get('policy', '')}",
        f"- Epochs finished: {info.get('epochs_done', 0)}, training time {info.get('train_seconds', '?')} s, "
        f"best epoch {metrics.get('best_epoch')} by `{metrics.get('monitor')}`",
        f"- Hardware: {info.get('hardware', '')}",
        *_cut_short(info, metrics),
        *_distilled(info),
        "",
        "## Test metrics",
        "",
    ]
    scalars = {k: v for k, v in test.items() if isinstance(v, (int, float))}
    if scalars:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in scalars.items()]
    else:
        lines.append("No test split was evaluated.")
    if meta.get("class_names"):
        lines += ["", "## Classes", "", ", ".join(map(str, meta["class_names"]))]
    lines += ["", "## Config", "", "```yaml"]
    lines += [f"{k}: {v}" for k, v in config.items()]
    lines += ["```", "", "## Use", "", "```bash", f"suite predict {run.name} INPUT", f"suite export {run.name} --format all",
              "```", "", "Inputs are raw (preprocessing is inside the model). `model.keras` loads with "
              "`keras.saving.load_model(path, safe_mode=True)` once the suite is installed.", ""]
    return "\n".join(lines)


def write_model_card(run, task) -> None:
    atomic.write_text(run.file("README.md"), render_model_card(run, task))


def _distilled(info: dict) -> list[str]:
    if not info.get("distill"):
        return []
    from suite.distill import DistillSpec, describe

    spec = DistillSpec(**info["distill"])
    decoded = info.get("teacher_output_seconds")
    extra = f"; the teacher's outputs took {decoded} s, not counted as training time" if decoded else ""
    return [f"- Distilled from run `{spec.teacher_name}` ({describe(spec)}{extra})"]
