"""Unit tests of the core's pure parts: configs, data sources, splits, events, atomic writes, the run store."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import numpy as np
import pytest

from suite import atomic
from suite.config import TaskConfig, load_config_file, parse_overrides
from suite.data import parse_source, split_indices, stratified_split_indices
from suite.errors import ConfigError, DataSourceError, RunError
from suite.events import EventWriter, read_events
from suite.runstore import RunStore


@dataclasses.dataclass
class DemoConfig(TaskConfig):
    model: Literal["small", "large"] = "small"
    use_aug: bool = True
    sizes: tuple[int, ...] = (32, 64)
    ratio: float = 0.5


def test_config_coerces_overrides_to_field_types():
    cfg = DemoConfig.from_dict(parse_overrides(["epochs=3", "use_aug=false", "sizes=[8, 16]", "ratio=1",
                                                "model=large", "learning_rate=3e-4"]))
    assert (cfg.epochs, cfg.use_aug, cfg.sizes, cfg.ratio, cfg.model) == (3, False, (8, 16), 1.0, "large")
    assert cfg.learning_rate == pytest.approx(3e-4)
    assert DemoConfig.from_dict({"sizes": "4,5"}).sizes == (4, 5)
    assert DemoConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 2.5}, "epochs must be int"),
        ({"epochs": 0}, "epochs must be > 0"),
        ({"model": "huge"}, "model must be one of small, large"),
        ({"use_aug": "maybe"}, "use_aug must be bool"),
        ({"learning_rate": 50}, "learning_rate must be in"),
        ({"val_fraction": 0.7}, "val_fraction must be in"),
        ({"typo_key": 1}, "unknown config key 'typo_key'"),
    ],
)
def test_config_rejects_bad_values_with_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        DemoConfig.from_dict(values)


def test_config_describe_for_forms():
    fields = {f["name"]: f for f in DemoConfig.describe()}
    assert fields["model"]["type"] == "choice" and fields["model"]["choices"] == ["small", "large"]
    assert fields["use_aug"]["type"] == "bool" and fields["epochs"]["default"] == 10


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(bad)
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 4\nmodel: large\n")
    assert DemoConfig.from_dict(load_config_file(good)).model == "large"


def test_data_source_syntax(tmp_path):
    assert parse_source("sample").kind == "sample"
    src = parse_source("tfds:glue/sst2")
    assert (src.kind, src.name, src.config, src.tfds_name) == ("tfds", "glue", "sst2", "glue/sst2")
    assert parse_source(str(tmp_path)).kind == "path"
    with pytest.raises(DataSourceError, match="neither"):
        parse_source(str(tmp_path / "missing"))
    with pytest.raises(DataSourceError):
        parse_source("  ")


def test_tfds_offline_is_one_clear_line(monkeypatch):
    from suite.data import tfds_load

    monkeypatch.setenv("SUITE_OFFLINE", "1")
    with pytest.raises(DataSourceError, match="not downloaded and there is no network") as err:
        tfds_load(parse_source("tfds:mnist"), ["train"], data_dir="/nonexistent-tfds-dir")
    assert "\n" not in str(err.value)
    with pytest.raises(DataSourceError, match="unknown TFDS data set"):
        tfds_load(parse_source("tfds:no_such_dataset_xyz"), ["train"])


def test_splits_are_seeded_disjoint_and_stratified():
    a = split_indices(100, 0.1, 0.2, seed=1)
    b = split_indices(100, 0.1, 0.2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert (len(a[0]), len(a[1]), len(a[2])) == (70, 10, 20)
    labels = np.array([0] * 90 + [1] * 10)
    tr, va, te = stratified_split_indices(labels, 0.1, 0.1, seed=0)
    assert set(labels[te]) == {0, 1} and set(labels[va]) == {0, 1}
    assert len(set(tr) | set(va) | set(te)) == 100


def test_event_reader_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    seen = []
    writer = EventWriter(path, [seen.append])
    writer.emit("epoch_end", epoch=1, metrics={"loss": 0.5})
    with open(path, "a") as fh:
        fh.write('{"event": "step", "epo')  # a crash in the middle of a write
    events = read_events(path)
    assert [e["event"] for e in events] == ["epoch_end"] and seen[0]["epoch"] == 1


def test_atomic_write_keeps_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("crash mid-save")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_run_store_create_list_get_unique_delete(tmp_path):
    store = RunStore(tmp_path)
    a = store.create("alpha", "demo", data="sample")
    b = store.create(store.unique_name("alpha"), "demo")
    assert b.name == "alpha-2"
    assert {r.name for r in store.list()} == {"alpha", "alpha-2"}
    assert store.get(str(a.path)).name == "alpha" and store.get("alpha").status == "created"
    a.update_info(status="completed")
    assert store.get("alpha").status == "completed"
    with pytest.raises(RunError, match="no run named"):
        store.get("beta")
    with pytest.raises(RunError, match="must be letters"):
        store.create("../escape", "demo")
    store.delete("alpha")
    assert [r.name for r in store.list()] == ["alpha-2"]
    (tmp_path / "not-a-run").mkdir()
    assert [r.name for r in store.list()] == ["alpha-2"]


@pytest.mark.parametrize("n_classes", [3, 10, 64, 65, 300])
def test_classification_postprocess_ranks_like_a_stable_sort_at_any_class_count(n_classes):
    """Small class counts rank in Python, large ones with numpy; both give the same top-k, ties in class order."""
    from suite.task import ClassificationTask

    rng = np.random.default_rng(n_classes)
    names = [f"c{i}" for i in range(n_classes)]
    probs = rng.random((3, n_classes)).astype(np.float32)
    probs[1, :] = 0.25  # all tied: the first classes win, in order
    probs[2, n_classes // 2] = 2.0
    out = ClassificationTask.postprocess(None, probs, {"class_names": names}, top_k=5)
    assert len(out) == 3
    for row, result in zip(probs, out, strict=True):
        want = sorted(range(n_classes), key=lambda i: (-row[i], i))[: min(5, n_classes)]
        assert [t["label"] for t in result["top"]] == [names[i] for i in want]
        assert [t["score"] for t in result["top"]] == [float(row[i]) for i in want]
        assert (result["label"], result["score"]) == (names[want[0]], float(row[want[0]]))
    assert [t["label"] for t in out[1]["top"]] == names[: min(5, n_classes)]
    assert out[2]["label"] == names[n_classes // 2]


def test_an_unsure_classification_carries_a_notice_and_a_sure_one_none():
    from suite.registry import get
    from suite.task import low_confidence

    assert low_confidence(2) == 0.75 and round(low_confidence(3), 3) == 0.667 and low_confidence(100) > 0.5
    task = get("tabular_classification")
    meta = {"class_names": ["a", "b", "c"]}
    unsure, sure = task.postprocess(np.array([[0.4, 0.35, 0.25], [0.9, 0.05, 0.05]], np.float32), meta)
    (note,) = task.output_notes(unsure, meta)
    assert note.startswith("Low confidence (40%)")
    assert task.output_notes(sure, meta) == []


def test_progress_counts_what_loops_report_and_the_bar_draws_it():
    import io

    from suite import progress

    seen = []
    progress.advance(5)  # nobody listens: nothing happens
    with progress.counting(lambda done, total: seen.append((done, total)), 300):
        for _ in range(3):
            progress.advance(100)
    progress.advance(1)
    assert seen == [(100, 300), (200, 300), (300, 300)]
    log = io.StringIO()
    bar = progress.StderrBar("evaluating", stream=log, log_every=3600)
    for done in (128, 256, 300):
        bar(done, 300)
    bar.close()
    # a log file gets the first line and the last, not one per batch
    assert log.getvalue() == "evaluating: 128/300 examples (43%)\nevaluating: 300/300 examples (100%)\n"


def test_online_honours_suite_offline_and_tries_every_host(monkeypatch):
    import socket

    from suite.data import online

    tried = []

    def connect(address, timeout):
        tried.append(address[0])
        if address[0] == "up.example":
            return socket.socket()  # a context manager that closes cleanly
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.delenv("SUITE_OFFLINE", raising=False)
    assert online("down.example", "up.example") and tried == ["down.example", "up.example"]
    assert not online("down.example")
    monkeypatch.setenv("SUITE_OFFLINE", "1")
    tried.clear()
    assert not online("up.example") and tried == []  # offline by choice: no connection tried
