"""Data larger than memory: examples read from files by ``tf.data``, a disk cache of decoded examples, and the
choice between memory, disk and no cache.

A plugin lists its files (path, label) and gives a ``decode(path) -> array`` of one fixed shape; the core reads
and decodes them in parallel, shuffled by file, and skips a file that fails to decode instead of ending the run
(:class:`SkipLog` counts and lists them; the trainer writes ``skipped.jsonl`` and fails in one line past
``max_bad_fraction``). :func:`choose_cache` is pure: the data's decoded size against the memory available.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import DataSourceError

CACHE_KINDS = ("auto", "memory", "disk", "none")
# Decoded data up to this share of the available memory is kept in memory: the rest of the process (model,
# activations, TensorFlow's own buffers) needs room too.
MEMORY_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class CacheChoice:
    kind: str  # memory | disk | none
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def choose_cache(requested: str, *, n_examples: int, example_bytes: int, available_bytes: int,
                 share: float = MEMORY_SHARE) -> CacheChoice:
    """Where decoded examples live during training, and why (pure: all inputs are numbers)."""
    total = int(n_examples) * int(example_bytes)
    size = f"{n_examples} examples, {_gb(total)} decoded"
    if requested not in CACHE_KINDS:
        raise ValueError(f"cache must be one of {', '.join(CACHE_KINDS)}, got {requested!r}")
    if requested != "auto":
        return CacheChoice(requested, f"cache={requested} as set ({size})")
    if total <= share * available_bytes:
        return CacheChoice("memory", f"{size}: fits in memory ({_gb(available_bytes)} available), decoded once")
    return CacheChoice("disk", f"{size}: more than {share:.0%} of the {_gb(available_bytes)} of memory available, "
                               "so decoded once into a disk cache and streamed from it each epoch")


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


class SkipLog:
    """Files that failed to decode during training: counted, listed, and checked against a bad fraction.

    Decoding runs on tf.data's threads, so additions take a lock; a file met again in a later epoch counts once.
    """

    def __init__(self, max_fraction: float = 0.01) -> None:
        self.max_fraction = max_fraction
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._seen.setdefault(path, reason)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def entries(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"path": p, "reason": r} for p, r in self._seen.items()]

    def write(self, path: Path) -> None:
        from suite import atomic

        atomic.write_text(path, "".join(json.dumps(e) + "\n" for e in self.entries()))

    def check(self, total: int) -> None:
        """One clear line once more than ``max_fraction`` of ``total`` files are bad."""
        bad = self.count
        if total and bad > self.max_fraction * total:
            raise DataSourceError(f"{bad} of {total} files could not be read (more than the allowed "
                                  f"{self.max_fraction:.1%}; see skipped.jsonl in the run folder)")


def file_dataset(paths: Sequence[str], labels: Sequence[int], decode: Callable[[str], np.ndarray], *,
                 shape: tuple[int, ...], dtype: str, skips: SkipLog | None = None,
                 shuffle_seed: int | None = None):
    """Unbatched ``(example, label)`` pairs decoded from ``paths`` in parallel; a file that raises is skipped.

    ``decode`` gets the path and returns an array of ``shape`` and ``dtype``. With ``shuffle_seed`` the file
    list is shuffled before decoding, in a new order on every pass (cheap: names, not pixels), so the
    trainer's own shuffle buffer of decoded examples can stay small.
    """
    import tensorflow as tf

    paths = list(map(str, paths))
    ds = tf.data.Dataset.from_tensor_slices((paths, paths, np.asarray(labels, np.int64)))
    if shuffle_seed is not None:
        ds = ds.shuffle(max(1, len(paths)), seed=shuffle_seed, reshuffle_each_iteration=True)
    return decoded(ds, lambda raw: decode(raw.decode()), shape=shape, dtype=dtype, skips=skips)


# Examples decoded per Python call. One tf.numpy_function call per file cost about 300 us of tf.data and GIL
# overhead against 85 us for reading and decoding a CIFAR-10 JPEG (docs/BENCHMARKS.md, "Data larger than memory").
DECODE_CHUNK = 32


def decoded(ds, decode: Callable[[bytes], np.ndarray], *, shape: tuple[int, ...], dtype: str,
            skips: SkipLog | None = None, chunk: int = DECODE_CHUNK):
    """``(name, payload, label)`` -> ``(decode(payload), label)`` in parallel, ``chunk`` examples per Python
    call; an example whose decoding raises (or gives another shape) is dropped and recorded under ``name`` in
    ``skips``. The order of the examples is kept."""
    import tensorflow as tf

    zero = np.zeros(shape, dtype)
    # SUITE_READ_LOG=FILE appends the name of every example read (with the process id), to check which files
    # each worker of a cluster reads.
    read_log = os.environ.get("SUITE_READ_LOG")

    def load(name: bytes, payload: bytes):
        if read_log:
            with open(read_log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\t{name.decode(errors='replace')}\n")
        try:
            x = np.asarray(decode(payload), dtype=dtype)
            if x.shape != tuple(shape):
                raise ValueError(f"decoded to shape {x.shape}, expected {tuple(shape)}")
            return x, True
        except Exception as err:  # noqa: BLE001 - any decoder error means this one file is unreadable
            if skips is not None:
                skips.add(name.decode(errors="replace"), (str(err).splitlines() or [type(err).__name__])[0][:200])
            return zero, False

    def load_chunk(names, payloads):
        xs = np.empty((len(names), *shape), dtype)
        ok = np.empty(len(names), bool)
        for i, (name, payload) in enumerate(zip(names, payloads, strict=True)):
            xs[i], ok[i] = load(name, payload)
        return xs, ok

    def read(names, payloads, labels):
        xs, ok = tf.numpy_function(load_chunk, [names, payloads], (tf.as_dtype(dtype), tf.bool), stateful=False)
        xs.set_shape((None, *shape))
        ok.set_shape([None])
        return xs, labels, ok

    def readable(x, y, ok):
        return ok

    def pair(x, y, ok):
        return x, y

    ds = ds.batch(chunk).map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    return ds.filter(readable).map(pair)


def worker_files(items: Sequence[Any], workers: int, index: int) -> list[Any]:
    """This worker's share of a file list (every ``workers``-th file): split by file, so each worker opens
    only its own files, and the shares together hold every file once."""
    if workers <= 1:
        return list(items)
    if not 0 <= index < workers:
        raise ValueError(f"worker index {index} out of range for {workers} workers")
    return list(items[index::workers])


def files_key(paths: Sequence[str], extra: dict[str, Any]) -> str:
    """A key for the decoded examples of ``paths`` under ``extra`` (decoding settings): it changes when any file
    is added, removed, resized or touched, or when the settings change."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def cache_root() -> Path:
    """Where disk caches live: ``SUITE_CACHE_DIR``, else ``$SUITE_HOME/cache``, else ``~/.cache/suite``."""
    env = os.environ.get("SUITE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("SUITE_HOME")
    return Path(home).expanduser() / "cache" if home else Path.home() / ".cache" / "suite"


class DiskCache:
    """Decoded examples of one split in one ``.npy`` file (read through a memory map), written once, atomically:
    a run that dies while writing leaves only a temporary file, and later runs with the same key reuse it."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.folder = (root or cache_root()) / key
        self.data, self.labels, self.info = (self.folder / n for n in ("examples.npy", "labels.npy", "info.json"))

    @property
    def ready(self) -> bool:
        return self.info.exists() and self.data.exists() and self.labels.exists()

    def build(self, ds, *, shape: tuple[int, ...], dtype: str, capacity: int,
              progress: Callable[[int], None] | None = None) -> int:
        """Write every ``(x, y)`` of ``ds`` (at most ``capacity``); returns the count written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"examples.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(max(1, capacity), *shape))
        labels, n, t0 = [], 0, time.perf_counter()
        for x, y in ds.batch(256).as_numpy_iterator():
            k = min(len(x), capacity - n)
            out[n:n + k] = x[:k]
            labels.extend(y[:k].tolist())
            n += k
            if progress is not None:
                progress(n)
        out.flush()
        del out
        _shrink(tmp, n, shape, dtype)
        np.save(self.folder / f"labels.{os.getpid()}.tmp.npy", np.asarray(labels, np.int64))
        os.replace(tmp, self.data)
        os.replace(self.folder / f"labels.{os.getpid()}.tmp.npy", self.labels)
        from suite import atomic

        atomic.write_json(self.info, {"count": n, "shape": list(shape), "dtype": dtype,
                                      "seconds": round(time.perf_counter() - t0, 2)})
        return n

    def dataset(self, gather: int = 64, shuffle_seed: int | None = None):
        """Unbatched ``(x, y)`` read from the memory map ``gather`` rows at a time (one read per few examples
        keeps the Python overhead per example small); with ``shuffle_seed`` the blocks come in a new order on
        every pass."""
        import tensorflow as tf

        info = json.loads(self.info.read_text())
        data = np.load(self.data, mmap_mode="r")
        labels = np.load(self.labels)
        n, shape = int(info["count"]), tuple(info["shape"])

        def rows(start):
            s = int(start)
            return np.ascontiguousarray(data[s:s + gather]), labels[s:s + gather]

        def read(start):
            x, y = tf.numpy_function(rows, [start], (tf.as_dtype(info["dtype"]), tf.int64), stateful=False)
            x.set_shape((None, *shape))
            y.set_shape((None,))
            return tf.data.Dataset.from_tensor_slices((x, y))

        starts = tf.data.Dataset.range(0, n, gather)
        if shuffle_seed is not None:
            starts = starts.shuffle(max(1, -(-n // gather)), seed=shuffle_seed, reshuffle_each_iteration=True)
        return starts.interleave(read, cycle_length=2, num_parallel_calls=2, deterministic=True)


def _shrink(path: Path, n: int, shape: tuple[int, ...], dtype: str) -> None:
    """Rewrite the .npy header of ``path`` for ``n`` rows (fewer files decoded than listed: some were skipped)."""
    full = np.load(path, mmap_mode="r")
    if len(full) == n:
        return
    del full
    tmp = path.with_suffix(".shrink.npy")
    src = np.load(path, mmap_mode="r")
    dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(max(1, n), *shape))
    for i in range(0, n, 4096):
        dst[i:i + 4096] = src[i:min(n, i + 4096)]
    dst.flush()
    del dst, src
    os.replace(tmp, path)


def scan_class_folders(root: Path, extensions: Sequence[str],
                       progress: Callable[[int], None] | None = None) -> list[tuple[str, str]]:
    """``(path, class name)`` for every file under ``root/<class>/`` (sub-folders included) whose suffix is
    in ``extensions``, sorted. Only names are listed (``os.scandir``, no file is opened), so 100,000 files
    take a second or two; ``progress`` is called with the running count every 10,000 files."""
    exts = {e.lower() for e in extensions}
    out: list[tuple[str, str]] = []
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith((".", "_")))
    for name in classes:
        stack = [os.path.join(root, name)]
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                        stack.append(entry.path)
                    elif os.path.splitext(entry.name)[1].lower() in exts and entry.is_file():
                        out.append((entry.path, name))
                        if progress is not None and len(out) % 10_000 == 0:
                            progress(len(out))
    out.sort()
    return out


def class_folder_splits(root: Path, extensions: Sequence[str], *, val_fraction: float,
                        test_fraction: float) -> dict[str, list[tuple[str, str]]]:
    """``split -> [(path, class)]`` of a class-folder tree: ``root/{train,val,test}/<class>/`` as they are (a
    missing val split is carved from train), or ``root/<class>/`` split with the seeded stratified split that
    the in-memory loaders use. Names only."""
    from suite.data import stratified_split_indices

    def split(files, val: float, test: float):
        # Integer labels in sorted class order, as the in-memory loaders split them (the seed depends on them).
        index = {c: i for i, c in enumerate(sorted({c for _, c in files}))}
        return stratified_split_indices([index[c] for _, c in files], val, test, seed=0)

    root = Path(root)
    dirs = {k: root / k for k in ("train", "val", "test") if (root / k).is_dir()}
    if "train" in dirs:
        out = {k: scan_class_folders(d, extensions) for k, d in dirs.items()}
        if "val" not in out:
            files = out["train"]
            tr, va, _ = split(files, val_fraction, 0.0)
            out["train"], out["val"] = [files[i] for i in tr], [files[i] for i in va]
        return out
    files = scan_class_folders(root, extensions)
    tr, va, te = split(files, val_fraction, test_fraction)
    return {"train": [files[i] for i in tr], "val": [files[i] for i in va], "test": [files[i] for i in te]}
