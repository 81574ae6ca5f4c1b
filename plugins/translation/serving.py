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
    """Strings -> (translations, source token counts) for serving, built once per predictor.

    Cold, one graph tokenizes, decodes and detokenizes (the first call of ``suite predict`` pays one trace). Once
    a shape has been seen ``compile_after`` times it is queued for one worker thread, which compiles shapes one
    at a time. From the first compile on, calls go through a second graph that tokenizes and, when the padded
    shape is among the compiled ones (``keys``, passed in, so adding one retraces nothing), pads and decodes with
    XLA; otherwise it decodes the unpadded ids on the graph. One call per translation: as three calls (tokenize,
    compiled loop, detokenize) the two small graphs around the loop cost 1.23x the loop alone here, as one 1.11x.
    """

    def __init__(self, model, *, compile_after: int = 2, beam_size: int | None = None):
        beam = model.beam_size if beam_size is None else int(beam_size)
        self.lengths = length_buckets(model.source_sequence_length)
        self.limit = int(model.source_sequence_length)
        self.compile_after = int(compile_after)
        widths, rows = tf.constant(self.lengths, tf.int32), tf.constant(BATCHES, tf.int32)

        def padded_shape(ids):
            """The bucket [rows, cols] of ids, as ``bucket`` computes it (rows unchanged above MAX_BATCH)."""
            n, width = tf.shape(ids)[0], tf.shape(ids)[1]
            cols = tf.gather(widths, tf.searchsorted(widths, width[None])[0])
            padded_n = tf.gather(rows, tf.minimum(tf.searchsorted(rows, n[None])[0], len(BATCHES) - 1))
            return tf.stack([tf.where(n <= MAX_BATCH, padded_n, n), cols])

        def pad(ids):
            """PAD columns (masked by the encoder) and filler rows repeating the first row (real input)."""
            shape = padded_shape(ids)
            ids = tf.pad(ids, [[0, 0], [0, shape[1] - tf.shape(ids)[1]]])
            return tf.concat([ids, tf.repeat(ids[:1], shape[0] - tf.shape(ids)[0], axis=0)], axis=0)

        def whole(strings):
            ids, counts = model.tokenize_source(strings)
            return model.ids_to_text(model.generate(ids, beam_size=beam)), counts

        def guarded(strings, keys):
            ids, counts = model.tokenize_source(strings)
            hit = tf.reduce_any(tf.reduce_all(tf.equal(keys, padded_shape(ids)[None, :]), axis=1))
            # An XLA call in the branch not taken is never run, so never compiled.
            out = tf.cond(hit, lambda: self._xla(pad(ids))[: tf.shape(ids)[0]],
                          lambda: model.generate(ids, beam_size=beam))
            return model.ids_to_text(out), counts, hit

        # autograph=False: these are plain graph code (the loop is ops.while_loop); converting their source to
        # autograph would more than double the first call's trace (2.4 s against 0.9 s here).
        strings = tf.TensorSpec([None], tf.string)
        self._whole = tf.function(whole, input_signature=[strings], autograph=False)
        self._tokenize = tf.function(lambda s: pad(model.tokenize_source(s)[0]), input_signature=[strings],
                                     autograph=False)  # the ids as the compiled loop sees them
        self._xla = tf.function(lambda x: model.generate(x, beam_size=beam), jit_compile=True, autograph=False)
        self._guarded = tf.function(guarded, input_signature=[strings, tf.TensorSpec([None, 2], tf.int32)],
                                    autograph=False)
        self._keys: tf.Tensor | None = None  # the compiled shapes, once there is one
        self._compiled: set[tuple[int, int]] = set()
        self._seen: dict[tuple[int, int], int] = {}
        self._queue: list[tuple[tuple[int, int], list[str]]] = []
        self._queued: set[tuple[int, int]] = set()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failed: str | None = None
        self.last_compiled = False  # whether the last call decoded with XLA (tests, benchmarks)

    def __call__(self, texts: list[str]) -> tuple[list[str], list[int]]:
        strings = tf.constant(texts, tf.string)
        keys, hit = self._keys, False
        if keys is not None and not self.failed:
            try:
                out, counts, hit = self._guarded(strings, keys)
            except tf.errors.OpError as err:  # e.g. memory for a compiled shape: the graph still serves
                self._give_up(err)
        if keys is None or self.failed:
            out, counts = self._whole(strings)
        self.last_compiled = bool(hit)
        counts = counts.numpy().tolist()
        if not self.last_compiled and not self.failed:
            width = max(1, min(max(counts, default=0), self.limit))
            self._note(bucket(len(texts), width, self.lengths), list(texts))
        return _decoded(out), counts

    def _note(self, key, texts):
        if key is None or self.compile_after < 1:
            return
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            if self._seen[key] < self.compile_after or key in self._queued:
                return
            self._queued.add(key)
            self._queue.append((key, texts))
            if self._worker is None:
                # Not a daemon: exiting waits for the compile in hand rather than killing TF in the middle of it.
                self._worker = threading.Thread(target=self._compile_queued, name="xla-decode-compiler")
                self._worker.start()

    def _compile_queued(self):
        while True:
            with self._lock:
                if not self._queue or self.failed:
                    self._queue.clear()
                    self._worker = None
                    return
                key, texts = self._queue.pop(0)
            self._compile(key, texts)

    def _compile(self, key, texts):
        strings = tf.constant(texts, tf.string)
        try:
            ids = self._tokenize(strings)
            if tuple(ids.shape) != key:
                raise RuntimeError(f"padded ids {tuple(ids.shape)} are not the bucket {key}")
            with self._lock:
                keys = tf.constant(sorted(self._compiled | {key}), tf.int32)
            self._guarded(strings, keys)  # traces once, then compiles this shape's decoding
        except Exception as err:  # noqa: BLE001 - any XLA failure means: keep serving from the graph
            self._give_up(err)
            return
        with self._lock:
            self._compiled.add(key)
            self._keys = tf.constant(sorted(self._compiled), tf.int32)

    def _give_up(self, err: Exception) -> None:
        self.failed = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        log.warning("XLA decoding unavailable, translations stay on the graph path (%s)", self.failed)

    def wait(self) -> None:
        """Block until every compile queued so far has finished (tests, benchmarks, warm-up)."""
        while (worker := self._worker) is not None:
            worker.join()

    @property
    def compiled(self) -> list[tuple[int, int]]:
        return sorted(self._compiled)


def _decoded(out) -> list[str]:
    return [t.decode("utf-8") for t in out.numpy()]


def translator_for(forward) -> Translator:
    """The serving translator of a predictor's compiled call (``forward.model`` is the model), made on first use.

    It lives on ``forward``, so it goes when the predictor goes (a cache keyed by the model would keep every
    model it ever served: the translator's graphs hold the model). The predictor's lock serialises calls.
    """
    found = getattr(forward, "translator", None)
    if found is None:
        off = os.environ.get("SUITE_TRANSLATION_XLA", "1") == "0"  # e.g. to save the compiler's memory
        found = forward.translator = Translator(forward.model, compile_after=0 if off else 2)
    return found
