"""``suite eval``: score a finished run's model on a split of its own data or of another source."""

from __future__ import annotations

import hashlib
from typing import Any

from suite import atomic
from suite.data import parse_source
from suite.errors import DataSourceError, RunError
from suite.runstore import RunStore


def evaluate_run(ref, *, data: str | None = None, split: str = "test", limit: int = 0) -> dict[str, Any]:
    run = RunStore().get(ref)
    if not run.has_model():
        raise RunError(f"run {run.name!r} has no model to evaluate (status: {run.status})")
    task = run.task()
    config = task.config_class.from_dict(run.config)
    source = parse_source(data or run.info.get("data", "sample"))
    bundle = task.load_data(source, config)
    ds = getattr(bundle, split, None)
    if ds is None:
        raise DataSourceError(f"data source {source.spec!r} has no {split} split")
    meta = run.meta
    if "class_names" in meta and bundle.meta.get("class_names") not in (None, meta["class_names"]):
        raise DataSourceError(
            f"the classes of {source.spec!r} ({', '.join(map(str, bundle.meta['class_names'][:6]))}...) differ "
            f"from the model's ({', '.join(map(str, meta['class_names'][:6]))}...)"
        )
    model = run.load_model()
    report = task.evaluate(model, ds, config, meta, limit=limit)
    report = {"data": source.spec, "split": split, "limit": limit, **report}
    slug = hashlib.sha1(f"{source.spec}|{split}|{limit}".encode()).hexdigest()[:8]
    atomic.write_json(run.file(f"eval/{split}-{slug}.json"), report)
    return report
