"""Streamed data (suite/streaming.py): the cache choice, skip-and-count, worker shares by file, the disk cache,
folder scans, and the image plugin training from files with a corrupt one among them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from suite.data import parse_source
from suite.errors import DataSourceError
from suite.streaming import (
    DiskCache,
    SkipLog,
    choose_cache,
    file_dataset,
    files_key,
    scan_class_folders,
    worker_files,
)

GB = 10**9


def test_choice_keeps_data_that_fits_in_memory_and_streams_the_rest():
    small = choose_cache("auto", n_examples=50_000, example_bytes=3072, available_bytes=16 * GB)
    assert small.kind == "memory" and "fits in memory" in small.reason
    # 200,000 photos at 256 px: 39 GB decoded, more than a quarter of 16 GB
    big = choose_cache("auto", n_examples=200_000, example_bytes=256 * 256 * 3, available_bytes=16 * GB)
    assert big.kind == "disk" and "disk cache" in big.reason and "39.32 GB" in big.reason
    # the same data with more memory free fits again: the choice follows the machine
    assert choose_cache("auto", n_examples=200_000, example_bytes=256 * 256 * 3,
                        available_bytes=200 * GB).kind == "memory"


def test_choice_as_set_wins_and_a_wrong_value_is_refused():
    for kind in ("memory", "disk", "none"):
        chosen = choose_cache(kind, n_examples=10, example_bytes=10, available_bytes=GB)
        assert chosen.kind == kind and "as set" in chosen.reason
    with pytest.raises(ValueError, match="cache must be one of"):
        choose_cache("ram", n_examples=10, example_bytes=10, available_bytes=GB)


def test_skip_log_counts_each_file_once_and_fails_past_the_allowed_fraction(tmp_path):
    log = SkipLog(max_fraction=0.1)
    log.add("a.jpg", "truncated")
    log.add("a.jpg", "truncated again, next epoch")
    assert log.count == 1
    log.check(total=10)  # 1 of 10 is not more than 10%
    log.add("b.jpg", "not an image")
    with pytest.raises(DataSourceError, match=r"2 of 10 files could not be read .*skipped.jsonl"):
        log.check(total=10)
    log.write(tmp_path / "skipped.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert rows == [{"path": "a.jpg", "reason": "truncated"}, {"path": "b.jpg", "reason": "not an image"}]


def _decode(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"OK"):
        raise ValueError("not a good file")
    return np.full((2, 2), int(data[2:]), np.int32)


def _files(tmp_path, n: int, bad: set[int] = frozenset()):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(b"BAD" if i in bad else f"OK{i}".encode())
        paths.append(str(p))
    return paths


def test_file_dataset_skips_a_corrupt_file_and_lists_it(tmp_path):
    paths = _files(tmp_path, 6, bad={3})
    log = SkipLog()
    ds = file_dataset(paths, list(range(6)), _decode, shape=(2, 2), dtype="int32", skips=log)
    got = [(int(x[0, 0]), int(y)) for x, y in ds.as_numpy_iterator()]
    assert got == [(0, 0), (1, 1), (2, 2), (4, 4), (5, 5)]
    assert log.entries() == [{"path": paths[3], "reason": "not a good file"}]



def test_decoding_in_chunks_keeps_the_order_and_names_each_bad_file_across_chunk_edges(tmp_path):
    """Files are decoded several per Python call: a bad file at a chunk's edge, or in a short last chunk,
    drops only itself, the others keep their order, and each bad one is listed under its own name."""
    import tensorflow as tf

    from suite.streaming import decoded

    paths = _files(tmp_path, 10, bad={3, 4, 9})
    log = SkipLog()
    ds = tf.data.Dataset.from_tensor_slices((paths, paths, np.arange(10, dtype=np.int64)))
    ds = decoded(ds, lambda raw: _decode(raw.decode()), shape=(2, 2), dtype="int32", skips=log, chunk=4)
    got = [(int(x[0, 0]), int(y)) for x, y in ds.as_numpy_iterator()]
    assert got == [(i, i) for i in (0, 1, 2, 5, 6, 7, 8)]
    # chunks decode in parallel, so the log is in the order the chunks finished
    assert sorted(e["path"] for e in log.entries()) == sorted([paths[3], paths[4], paths[9]])

def test_file_dataset_shuffles_by_file_with_a_new_order_each_pass(tmp_path):
    paths = _files(tmp_path, 40)
    ds = file_dataset(paths, list(range(40)), _decode, shape=(2, 2), dtype="int32", shuffle_seed=0).repeat(2)
    labels = [int(y) for _, y in ds.as_numpy_iterator()]
    first, second = labels[:40], labels[40:]
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != list(range(40)) and first != second


def test_worker_shares_are_split_by_file_and_together_hold_every_file_once():
    files = [f"f{i}.jpg" for i in range(11)]
    shares = [worker_files(files, 3, i) for i in range(3)]
    assert sorted(sum(shares, [])) == sorted(files)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(shares) for b in shares[i + 1:])
    assert worker_files(files, 1, 0) == files
    with pytest.raises(ValueError):
        worker_files(files, 2, 2)


def test_disk_cache_is_written_once_and_read_back_the_same(tmp_path):
    paths = _files(tmp_path, 150, bad={7})
    key = files_key(paths, {"shape": [2, 2]})
    ds = file_dataset(paths, list(range(150)), _decode, shape=(2, 2), dtype="int32")
    cache = DiskCache(key, root=tmp_path / "cache")
    assert not cache.ready
    assert cache.build(ds, shape=(2, 2), dtype="int32", capacity=150) == 149  # the bad file is left out
    assert cache.ready and not list(cache.folder.glob("*.tmp*"))  # nothing half-written left behind
    again = DiskCache(key, root=tmp_path / "cache")
    assert again.ready  # a later run finds it by the same key
    rows = sorted((int(x[0, 0]), int(y)) for x, y in again.dataset().as_numpy_iterator())
    assert rows == [(i, i) for i in range(150) if i != 7]
    shuffled = [int(y) for _, y in again.dataset(gather=16, shuffle_seed=0).as_numpy_iterator()]
    assert sorted(shuffled) == [i for i in range(150) if i != 7] and shuffled != sorted(shuffled)


def test_files_key_changes_with_the_files_and_the_settings(tmp_path):
    paths = _files(tmp_path, 3)
    key = files_key(paths, {"shape": [2, 2]})
    assert files_key(paths, {"shape": [2, 2]}) == key
    assert files_key(paths, {"shape": [4, 4]}) != key
    assert files_key(paths[:2], {"shape": [2, 2]}) != key
    (tmp_path / "0.bin").write_bytes(b"OK0000")  # a file rewritten with another size
    assert files_key(paths, {"shape": [2, 2]}) != key


def test_scan_lists_class_folders_recursively_without_opening_files(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        (tmp_path / cls / "a.JPG").write_bytes(b"")
        (tmp_path / cls / "sub" / "b.png").write_bytes(b"")
        (tmp_path / cls / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.png").write_bytes(b"")
    counts = []
    found = scan_class_folders(tmp_path, (".jpg", ".png"), progress=counts.append)
    assert [(p.split("/")[-1], c) for p, c in found] == [("a.JPG", "cat"), ("b.png", "cat"), ("a.JPG", "dog"),
                                                         ("b.png", "dog")]


def _photo_folder(root, per_class: int = 12, bad: int = 1):
    rng = np.random.default_rng(0)
    for c, level in (("light", 200), ("dark", 40)):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = (40, 60) if i % 2 else (56, 40)
            arr = np.clip(level + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.jpg", quality=90)
    for i in range(bad):
        (root / "light" / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)


@pytest.fixture()
def image_task():
    from suite.registry import get

    return get("image_classification")


def test_image_folder_streams_when_asked_and_gives_the_same_examples(image_task, tmp_path):
    _photo_folder(tmp_path, bad=0)
    memory = image_task.load_data(parse_source(str(tmp_path)), image_task.make_config({"cache": "memory"}))
    stream = image_task.load_data(parse_source(str(tmp_path)), image_task.make_config({"cache": "none"}))
    assert memory.meta["cache"]["kind"] == "memory" and stream.meta["cache"]["kind"] == "none"
    assert stream.counts == memory.counts and stream.meta["class_names"] == memory.meta["class_names"]
    for split in ("train", "val", "test"):
        a = sorted((int(y), x.tobytes()) for x, y in getattr(memory, split).as_numpy_iterator())
        b = sorted((int(y), x.tobytes()) for x, y in getattr(stream, split).as_numpy_iterator())
        assert a == b, f"{split}: the streamed examples differ from the in-memory ones"
    shares = [[int(y) for _, y in stream.shard_train(2, i).as_numpy_iterator()] for i in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(int(y) for _, y in stream.train.as_numpy_iterator())


def test_training_from_files_skips_a_corrupt_file_and_lists_it(image_task, tmp_path, suite_home):
    from suite.trainer import train

    data = tmp_path / "photos"
    _photo_folder(data, per_class=20, bad=1)
    run = train(image_task, str(data), {"cache": "none", "epochs": 1, "model": "cnn_small", "batch_size": 8,
                                        "max_bad_fraction": 0.2, "test_fraction": 0.0})
    assert run.status == "completed"
    skipped = [json.loads(line) for line in run.file("skipped.jsonl").read_text().splitlines()]
    assert [s["path"].split("/")[-1] for s in skipped] == ["broken0.jpg"]
    assert run.metrics["skipped_files"] == 1


def test_training_fails_in_one_line_when_too_many_files_are_bad(image_task, tmp_path, suite_home):
    from suite.trainer import train

    data = tmp_path / "photos"
    _photo_folder(data, per_class=10, bad=6)
    with pytest.raises(DataSourceError, match="files could not be read"):
        train(image_task, str(data), {"cache": "none", "epochs": 1, "model": "cnn_small", "batch_size": 4,
                                      "max_bad_fraction": 0.05, "test_fraction": 0.0})


def test_pack_round_trip_gives_the_same_examples_and_labels(image_task, tmp_path):
    from click.testing import CliRunner

    from suite.cli import cli

    src, out = tmp_path / "photos", tmp_path / "packed"
    _photo_folder(src, bad=0)
    result = CliRunner().invoke(cli, ["data", "pack", str(src), str(out), "--task", "image_classification"])
    assert result.exit_code == 0, result.output
    assert "packed 24 files" in result.output
    manifest = json.loads((out / "packed.json").read_text())
    assert manifest["class_names"] == ["dark", "light"] and sum(manifest["counts"].values()) == 24
    config = image_task.make_config({"cache": "none"})
    folder = image_task.load_data(parse_source(str(src)), config)
    packed = image_task.load_data(parse_source(str(out)), config)
    assert packed.counts == folder.counts and packed.meta["class_names"] == folder.meta["class_names"]
    for split in ("train", "val", "test"):
        a = sorted((int(y), x.tobytes()) for x, y in getattr(folder, split).as_numpy_iterator())
        b = sorted((int(y), x.tobytes()) for x, y in getattr(packed, split).as_numpy_iterator())
        assert a == b, f"{split}: the packed examples differ from the folder's"
    again = CliRunner().invoke(cli, ["data", "pack", str(src), str(out), "--task", "image_classification"])
    assert again.exit_code != 0 and "exists already" in str(again.exception)


def test_scan_command_counts_files_per_split(tmp_path):
    from click.testing import CliRunner

    from suite.cli import cli

    _photo_folder(tmp_path / "photos", bad=0)
    result = CliRunner().invoke(cli, ["data", "scan", str(tmp_path / "photos"), "--task", "image_classification",
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert sum(summary["splits"].values()) == 24 and summary["classes"] == ["dark", "light"]


def test_two_workers_on_localhost_read_disjoint_shares_that_cover_every_training_file(tmp_path):
    """`suite launch --workers 2` on a streamed folder: each worker decodes only its own training files, and the
    two shares together hold every training file (split by file, not by element)."""
    import os
    import subprocess
    import sys

    from suite.streaming import class_folder_splits

    data, log = tmp_path / "photos", tmp_path / "reads.tsv"
    _photo_folder(data, per_class=16, bad=0)
    env = dict(os.environ, SUITE_HOME=str(tmp_path / "runs"), SUITE_READ_LOG=str(log), TMPDIR=str(tmp_path),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "suite.cli", "launch", "--workers", "2", "--timeout", "240", "--", "train",
         "image_classification", "--data", str(data), "--epochs", "1", "--name", "mw-files",
         "--set", "cache=none", "--set", "model=cnn_small", "--set", "batch_size=4"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = {p for p, _ in class_folder_splits(data, (".jpg",), val_fraction=0.1, test_fraction=0.1)["train"]}
    reads: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        pid, name = line.split("\t", 1)
        if name in train:
            reads.setdefault(pid, set()).add(name)
    assert len(reads) == 2, f"expected training reads from two worker processes, got {len(reads)}"
    a, b = reads.values()
    assert a.isdisjoint(b), "a training file was read by both workers"
    assert a | b == train, "some training files were read by neither worker"
