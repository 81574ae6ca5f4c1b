"""Translation quality against training time: the suite's default and the KerasHub recipe, same time budget.

Both train on ``spa-eng/train.tsv`` (all of it; quick: the first 4,000 pairs) for the same wall-clock budget,
one after the other on the same machine, with their weights saved every ``budget / 6`` of training time (the
saving is not counted). Each snapshot is then scored with sacreBLEU on the first pairs of ``test.tsv``: the
suite through its served string-to-string model, the recipe through its own greedy decoding. The suite's
learning rate decays over the budget (``time_budget_minutes``, its documented way to train for a fixed time);
the recipe runs as published (rmsprop at its default rate) until the budget ends it.

    .venv/bin/python -c "from bench.translation_curve import run; print(run(quick=True))"
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import (
    DOCS,
    load_results,
    machine,
    md_table,
    plot_accuracy_curves,
    save_results,
    shared_data,
    timed_snapshots,
)

NAME = "translation_curve"
PLOT = DOCS / "bench_translation_curve.png"
PLOT_QUICK = DOCS / "bench_translation_curve_quick.png"  # quick runs never overwrite the full figure
SNAPSHOTS = 6
DEFAULT_MINUTES = {True: 0.25, False: 12.0}  # quick, full


def _settings(quick: bool) -> dict:
    minutes = float(os.environ.get("BENCH_CURVE_MINUTES", DEFAULT_MINUTES[quick]))
    return {"train_examples": 4_000 if quick else 0, "eval_pairs": 50 if quick else 500, "budget_minutes": minutes}


def _bleu(hyps: list[str], refs: list[str]) -> dict:
    import sacrebleu

    return {"bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)}


def _suite(folder: Path, s: dict, home: Path, test_pairs) -> dict:
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train
    from suite_plugins.translation.task import _dataset, evaluate_translations

    budget_s = 60 * s["budget_minutes"]
    overrides: dict = {"time_budget_minutes": s["budget_minutes"], "epochs": 40, "eval_limit": 50}
    if s["train_examples"]:
        overrides.update(max_train_examples=s["train_examples"], vocab_sample=s["train_examples"])
    snaps = timed_snapshots(home / "suite-snapshots", budget_s / SNAPSHOTS)
    run = train(get("translation"), str(folder), overrides, name="curve", store=RunStore(home),
                options=TrainOptions(tensorboard=False), callbacks=[snaps])
    if run.status != "completed":
        raise RuntimeError(f"suite run ended {run.status}: {run.info.get('error')}")
    model = run.load_model()
    points = []
    for p in snaps.points:
        model.load_weights(p.pop("snapshot"))
        scores = evaluate_translations(model, _dataset(test_pairs), batch_size=50)
        points.append({**p, "bleu": scores["bleu"], "chrf": scores["chrf"]})
    return {"points": points, "epochs_done": run.info.get("epochs_done"), "config": run.config}


def _recipe(train_pairs, test_pairs, s: dict, home: Path) -> dict:
    from bench.baselines.keras_hub_translation import Recipe

    budget_s = 60 * s["budget_minutes"]
    recipe = Recipe(train_pairs)
    snaps = timed_snapshots(home / "recipe-snapshots", budget_s / SNAPSHOTS, budget_s=budget_s)
    recipe.fit(1000, callbacks=[snaps])  # the budget, not the epochs, ends it
    sources, refs = [p[0] for p in test_pairs], [p[1] for p in test_pairs]
    points = []
    for p in snaps.points:
        recipe.model.load_weights(p.pop("snapshot"))
        hyps, _ = recipe.translate_all(sources, batch_size=50)
        lowered = _bleu(hyps, [r.lower() for r in refs])  # the recipe lower-cases everything it learns
        points.append({**p, **_bleu(hyps, refs), "bleu_lowercased_refs": lowered["bleu"]})
    return {"points": points}


def run(quick: bool) -> str:
    folder = shared_data("spa-eng")
    if folder is None:
        return "## Translation: quality against training time\n\nSkipped: shared data `spa-eng/` not found.\n"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from suite_plugins.translation.task import read_pairs

    s = _settings(quick)
    train_pairs = read_pairs(folder / "train.tsv")
    if s["train_examples"]:
        train_pairs = train_pairs[: s["train_examples"]]
    test_pairs = read_pairs(folder / "test.tsv")[: s["eval_pairs"]]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-translation-curve-") as home:
        suite = _suite(folder, s, Path(home), test_pairs)
        print("suite:", suite["points"], flush=True)
        recipe = _recipe(train_pairs, test_pairs, s, Path(home))
        print("recipe:", recipe["points"], flush=True)
    data = {"mode": "quick" if quick else "full", "machine": machine(), "settings": s, "suite": suite,
            "recipe": recipe, "wall_seconds": round(time.perf_counter() - t0, 1)}
    save_results(NAME + ("_quick" if quick else ""), data)
    return render(data)


def render(data: dict) -> str:
    quick = data["mode"] == "quick"
    s, suite, recipe = data["settings"], data["suite"], data["recipe"]
    plot = PLOT_QUICK if quick else PLOT
    plot_accuracy_curves(
        {f"suite default ({suite['epochs_done']} epochs in the budget)": suite["points"],
         "KerasHub English-to-Spanish recipe": recipe["points"]},
        plot, bar={"issue bar (60 min, 2,000 pairs)": 37.0}, key="bleu", scale=1.0, unit=" BLEU",
        ylabel=f"BLEU, first {s['eval_pairs']} test pairs", title="spa-eng: BLEU against training time")
    rows = [[name, p["seconds"], p["step"], p["bleu"], p["chrf"]]
            for name, pts in (("suite", suite["points"]), ("recipe", recipe["points"])) for p in pts]
    minutes = s["budget_minutes"]
    env = f"BENCH_CURVE_MINUTES={minutes:g} " if minutes != DEFAULT_MINUTES[quick] else ""
    data_desc = f"the first {s['train_examples']:,} pairs of" if s["train_examples"] else "all of"
    return "\n".join([
        "## Translation: quality against training time" + (" — quick" if quick else ""),
        "",
        f"Data: {data_desc} `spa-eng/train.tsv`; BLEU and chrF (sacreBLEU) on the first {s['eval_pairs']} pairs "
        f"of `spa-eng/test.tsv`. Each model trains for {s['budget_minutes']:g} minutes of wall-clock time, one "
        f"after the other; weights are saved every {s['budget_minutes'] / SNAPSHOTS:g} minutes of training "
        "(saving not counted) and scored afterwards. The suite runs its default configuration with "
        f"`time_budget_minutes={s['budget_minutes']:g}` (the learning rate decays over the budget; its time "
        "includes its per-epoch validation); the recipe runs as published until the budget stops it.",
        f"Command: `{env}python -m bench.run --only translation_curve{' --quick' if quick else ' --full'}` "
        f"(`BENCH_CURVE_MINUTES` sets the budget; default {DEFAULT_MINUTES[quick]:g}). Machine: {data['machine']}.",
        "",
        f"![BLEU against training time]({plot.name})",
        "",
        md_table(["model", "training s", "optimizer steps", "BLEU", "chrF"], rows),
        "",
    ])


if __name__ == "__main__":
    import sys

    if "--render" in sys.argv:
        print(render(load_results(NAME + ("_quick" if "--quick" in sys.argv else ""))))
    else:
        print(run(quick="--full" not in sys.argv))
