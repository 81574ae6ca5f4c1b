"""The serving path for the built-in Transformer: in-graph tokenization, XLA-compiled decoding, detokenization.

The decoding loop (greedy or beam, over the key/value cache) is where a translation spends its time, and as one
ordinary graph each of its ~40 small steps pays TensorFlow's per-op dispatch. Compiled with XLA, one sentence
translates 2x-2.6x faster greedy and about 4x faster with four beams on the 2-core benchmark machine, with the
same translations (``docs/BENCHMARKS.md``). XLA compiles per
input shape, so source ids are padded to a few length buckets and batches to a power of two: padding sits behind
the encoder's padding mask, and batch rows are independent, so neither changes a translation.

A compile takes 2-3 s, so a shape is compiled only once it has been seen twice (a one-off ``suite predict`` never
pays for it), and then on a worker thread: the call that triggered it, and any until it is ready, take the
ordinary graph. A platform where XLA fails falls back to the graph for good, with one warning;
``SUITE_TRANSLATION_XLA=0`` keeps a process on the graph (XLA's compiler raises serving's peak memory, see
``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

import tensorflow as tf

log = logging.getLogger(__name__)
BATCHES = (1, 2, 4, 8, 16, 32, 64)  # batch sizes pad up to one of these; larger batches take the graph
MAX_BATCH = BATCHES[-1]


def length_buckets(limit: int) -> tuple[int, ...]:
    """Padded source lengths: powers of two from 8, then the model's limit (40 -> 8, 16, 32, 40)."""
    sizes, n = set(), 8
    while n < limit:
        sizes.add(n)
        n *= 2
    sizes.add(int(limit))
    return tuple(sorted(sizes))


def bucket(batch: int, length: int, lengths: tuple[int, ...]) -> tuple[int, int] | None:
    """The compiled shape a (batch, length) request pads to, or None for the graph path."""
    if batch < 1 or batch > MAX_BATCH or length > lengths[-1]:
        return None
    return next(n for n in BATCHES if n >= batch), next(n for n in lengths if n >= length)


class Translator:
    """Strings -> (translations, source token counts) for serving, built once per loaded model.

    Cold, one graph tokenizes, decodes and detokenizes (the first call of ``suite predict`` pays one trace). Once
    a shape has been seen ``compile_after`` times a worker thread compiles its decoding; from the first compile
    on, calls go through a second graph that tokenizes, pads to the bucket, and decodes with XLA when the shape
    is among the compiled ones (``keys``, passed in, so adding one retraces nothing), on the graph otherwise.
    One call per translation: as three calls (tokenize, compiled loop, detokenize) the two small graphs around
    the loop cost 1.23x the loop alone here, as one 1.11x.
    """

    def __init__(self, model, *, compile_after: int = 2, beam_size: int | None = None):
        beam = model.beam_size if beam_size is None else int(beam_size)
        self.lengths = length_buckets(model.source_sequence_length)
        self.limit = int(model.source_sequence_length)
        self.compile_after = int(compile_after)
        widths, rows = tf.constant(self.lengths, tf.int32), tf.constant(BATCHES, tf.int32)

        def whole(strings):
            return model.translate(strings, beam_size=beam), model.tokenize_source(strings)[1]

        def tokenize_padded(strings):
            ids, counts = model.tokenize_source(strings)
            n, width = tf.shape(ids)[0], tf.shape(ids)[1]
            cols = tf.gather(widths, tf.searchsorted(widths, width[None])[0])
            extra = tf.where(n <= MAX_BATCH, tf.gather(rows, tf.minimum(tf.searchsorted(rows, n[None])[0],
                                                                        len(BATCHES) - 1)) - n, 0)
            ids = tf.pad(ids, [[0, 0], [0, cols - width]])  # PAD columns: masked by the encoder
            return tf.concat([ids, tf.repeat(ids[:1], extra, axis=0)], axis=0), counts  # filler rows: real input

        def guarded(strings, keys):
            ids, counts = tokenize_padded(strings)
            hit = tf.reduce_any(tf.reduce_all(tf.equal(keys, tf.shape(ids)[None, :]), axis=1))
            # An XLA call in the branch not taken is never run, so never compiled.
            out = tf.cond(hit, lambda: self._xla(ids), lambda: model.generate(ids, beam_size=beam))
            return model.ids_to_text(out), counts, hit

        # autograph=False: these are plain graph code (the loop is ops.while_loop); converting their source to
        # autograph would more than double the first call's trace (2.4 s against 0.9 s here).
        strings = tf.TensorSpec([None], tf.string)
        self._whole = tf.function(whole, input_signature=[strings], autograph=False)
        self._tokenize = tf.function(tokenize_padded, input_signature=[strings], autograph=False)
        self._xla = tf.function(lambda x: model.generate(x, beam_size=beam), jit_compile=True, autograph=False)
        self._guarded = tf.function(guarded, input_signature=[strings, tf.TensorSpec([None, 2], tf.int32)],
                                    autograph=False)
        self._keys: tf.Tensor | None = None  # the compiled shapes, once there is one
        self._compiled: set[tuple[int, int]] = set()
        self._seen: dict[tuple[int, int], int] = {}
        self._workers: dict[tuple[int, int], threading.Thread] = {}
        self._lock = threading.Lock()
        self.failed: str | None = None
        self.last_compiled = False  # whether the last call decoded with XLA (tests, benchmarks)

    def __call__(self, texts: list[str]) -> tuple[list[str], list[int]]:
        strings = tf.constant(texts, tf.string)
        keys = self._keys
        if keys is not None and not self.failed:
            out, counts, hit = self._guarded(strings, keys)
            self.last_compiled = bool(hit)
        else:
            (out, counts), self.last_compiled = self._whole(strings), False
        counts = counts.numpy().tolist()
        if not self.last_compiled and not self.failed:
            width = max(1, min(max(counts, default=0), self.limit))
            self._note(bucket(len(texts), width, self.lengths), list(texts))
        return _decoded(out)[: len(texts)], counts

    def _note(self, key, texts):
        if key is None or self.compile_after < 1:
            return
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            if self._seen[key] >= self.compile_after and key not in self._workers:
                worker = threading.Thread(target=self._compile, args=(key, texts), name=f"xla-decode-{key}")
                self._workers[key] = worker
                worker.start()  # not a daemon: exiting waits for it rather than killing TF mid-compile

    def _compile(self, key, texts):
        strings = tf.constant(texts, tf.string)
        try:
            ids, _ = self._tokenize(strings)
            if tuple(ids.shape) != key:
                raise RuntimeError(f"padded ids {tuple(ids.shape)} are not the bucket {key}")
            with self._lock:
                keys = tf.constant(sorted(self._compiled | {key}), tf.int32)
            self._guarded(strings, keys)  # traces once, then compiles this shape's decoding
        except Exception as err:  # noqa: BLE001 - any XLA failure means: keep serving from the graph
            self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            log.warning("XLA decoding unavailable, translations stay on the graph path (%s)", self.failed)
            return
        with self._lock:
            self._compiled.add(key)
            self._keys = tf.constant(sorted(self._compiled), tf.int32)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every compile started so far has finished (tests, benchmarks, warm-up)."""
        for worker in list(self._workers.values()):
            worker.join(timeout)

    @property
    def compiled(self) -> list[tuple[int, int]]:
        return sorted(self._compiled)


def _decoded(out) -> list[str]:
    return [t.decode("utf-8") for t in out.numpy()]


_translators: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_translators_lock = threading.Lock()


def translator_for(model) -> Translator:
    """The model's serving translator, made on first use and shared (the predictor's lock serialises calls)."""
    with _translators_lock:
        found = _translators.get(model)
        if found is None:
            off = os.environ.get("SUITE_TRANSLATION_XLA", "1") == "0"  # e.g. to save the compiler's memory
            found = _translators[model] = Translator(model, compile_after=0 if off else 2)
        return found
