"""``suite eval``: score a finished run's model on a split of its own data or of another source."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from suite import atomic
from suite import progress as progress_
from suite.data import parse_source
from suite.errors import DataSourceError, RunError
from suite.runstore import RunStore


def evaluate_run(ref, *, data: str | None = None, split: str = "test", limit: int = 0,
                 progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Score the run's model; ``progress(done, total)`` hears of the examples scored as the loop goes."""
    run = RunStore().get(ref)
    if not run.has_model():
        raise RunError(f"run {run.name!r} has no model to evaluate (status: {run.status})")
    task = run.task()
    config = task.config_class.from_dict(run.config)
    source = parse_source(data or run.info.get("data", "sample"))
    bundle = task.load_data(source, config)
    if split == "all":  # every labelled example of the source, each once: its splits together
        parts = [d for d in (bundle.train, bundle.val, bundle.test) if d is not None]
        ds = parts[0]
        for part in parts[1:]:
            ds = ds.concatenate(part)
    else:
        ds = getattr(bundle, split, None)
    if ds is None:
        raise DataSourceError(f"data source {source.spec!r} has no {split} split")
    meta = run.meta
    if "class_names" in meta and bundle.meta.get("class_names") is not None:
        ds = match_classes(ds, [str(c) for c in bundle.meta["class_names"]], [str(c) for c in meta["class_names"]],
                           source.spec)
    model = run.load_model()
    counts = bundle.counts or {}
    total = sum(counts.get(k) or 0 for k in ("train", "val", "test")) if split == "all" else counts.get(split)
    total = min(limit, total) if limit and total else (limit or total or None)
    with progress_.counting(progress, total):
        report = task.evaluate(model, ds, config, meta, limit=limit)
    report = {"data": source.spec, "split": split, "limit": limit, **report}
    slug = hashlib.sha1(f"{source.spec}|{split}|{limit}".encode()).hexdigest()[:8]
    atomic.write_json(run.file(f"eval/{split}-{slug}.json"), report)
    return report


def match_classes(ds, source_names: list[str], model_names: list[str], spec: str):
    """Labels of ``ds`` (indices into ``source_names``) renumbered to the model's class order, matched by name;
    one clear line when the source has classes the model does not know."""
    unknown = [n for n in source_names if n not in model_names]
    if unknown:
        raise DataSourceError(
            f"{spec!r} has class(es) the model does not know: {', '.join(unknown[:6])}"
            f"{'...' if len(unknown) > 6 else ''} (the model's: {', '.join(model_names[:10])})")
    if source_names == model_names[:len(source_names)]:
        return ds
    import tensorflow as tf

    table = tf.constant([model_names.index(n) for n in source_names], tf.int64)

    def renumber(x, y):
        return x, tf.gather(table, tf.cast(y, tf.int64))

    return ds.map(renumber)
