"""A packed data folder for repeated large runs: sharded TFRecord files (the format TFDS and Model Garden read)
holding each file's bytes, its label and its name, with ``packed.json`` beside them (class names, counts,
shards). ``suite data pack SOURCE OUT`` writes one; a packed folder is a data source like any other, read one
shard file per worker share, so workers split it by file.

Packing keeps the files' encoded bytes (JPEG, WAV...), not decoded pixels: the folder stays the size of the
source, and decoding with the plugin's own checks stays on the read path.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import DataSourceError

MANIFEST = "packed.json"
FORMAT = "suite-packed-1"
SHARD_BYTES = 64 * 1024 * 1024  # about 64 MB a shard: big enough to read fast, small enough to split over workers


def is_packed(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def pack(splits: dict[str, Sequence[tuple[str, str]]], out: Path, *, shard_bytes: int = SHARD_BYTES,
         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``split -> [(path, class name)]`` into ``out`` as TFRecord shards; returns the manifest.

    Written into a temporary folder beside ``out`` and renamed at the end: ``out`` is whole or absent.
    """
    import tensorflow as tf

    out = Path(out)
    if out.exists():
        raise DataSourceError(f"{out} exists already; pack into a new folder")
    names = sorted({c for files in splits.values() for _, c in files})
    index = {c: i for i, c in enumerate(names)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total, done, t0 = sum(len(v) for v in splits.values()), 0, time.perf_counter()
    manifest: dict[str, Any] = {"format": FORMAT, "class_names": names, "counts": {}, "class_counts": {},
                                "shards": {}}
    try:
        for split, files in splits.items():
            shards: list[str] = []
            writer, size = None, 0
            counts = np.zeros(len(names), np.int64)
            for path, cls in files:
                data = Path(path).read_bytes()
                if writer is None or size >= shard_bytes:
                    if writer is not None:
                        writer.close()
                    shards.append(f"{split}-{len(shards):05d}.tfrecord")
                    writer, size = tf.io.TFRecordWriter(str(tmp / shards[-1])), 0
                writer.write(_example(data, index[cls], os.path.basename(path)))
                size += len(data)
                counts[index[cls]] += 1
                done += 1
                if progress is not None and done % 1000 == 0:
                    progress(done, total)
            if writer is not None:
                writer.close()
            manifest["shards"][split] = shards
            manifest["counts"][split] = int(counts.sum())
            manifest["class_counts"][split] = counts.tolist()
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _example(data: bytes, label: int, name: str) -> bytes:
    import tensorflow as tf

    feature = {
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise DataSourceError(f"cannot read {Path(path) / MANIFEST}: {err}") from None
    if data.get("format") != FORMAT:
        raise DataSourceError(f"{path} is packed in format {data.get('format')!r}, not {FORMAT!r}")
    return data


def records(path: Path, shards: Sequence[str], *, shuffle_seed: int | None = None):
    """``(name, bytes, label)`` from the shard files; with ``shuffle_seed`` the shards come in a new order on
    each pass and two are read at once (records interleave), the trainer's buffer shuffling the rest."""
    import tensorflow as tf

    files = [str(Path(path) / s) for s in shards]
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_seed is not None:
        ds = ds.shuffle(max(1, len(files)), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=2, num_parallel_calls=2, deterministic=True)
    spec = {"data": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "name": tf.io.FixedLenFeature([], tf.string)}

    def parse(raw):
        ex = tf.io.parse_single_example(raw, spec)
        return ex["name"], ex["data"], ex["label"]

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
