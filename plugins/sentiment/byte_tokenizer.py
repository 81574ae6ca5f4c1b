"""The model's tokenizer in numeric ops over UTF-8 bytes, for runtimes without string ops (LiteRT builtins, ONNX).

``standardize_text`` + whitespace split + the vocabulary lookup of ``TextVectorization`` need string kernels
(regex, lower, split, hash tables) that LiteRT's builtin ops and ONNX lack. This module computes the same token
ids from the text's UTF-8 bytes with integer ops only (compare, cumsum, segment sums, gathers):

- lowercase ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic letters (other scripts' capitals are left
  as they are);
- control characters, NEL, U+2028/U+2029 and ``<br>``, ``<br/>``, ``<br />``, ``<br >`` tags are spaces;
- ``n't`` and the clitics ``'s 're 've 'll 'd 'm`` (before a non-word character) start a token, every
  punctuation character of ``standardize_text`` is a token of its own, whitespace separates tokens;
- each token's bytes are hashed with two position-weighted sums, each below 2**24 for tokens of up to
  ``MAX_TOKEN_BYTES`` bytes (longer tokens are out of vocabulary), so they are exact in int32 and in float32
  alike (int64 keys near 2**54 were compared wrongly in the ONNX file, tf2onnx 1.17 with onnxruntime), and
  looked up by binary search in the vocabulary's sorted key pairs, which are stored in the file (12 bytes a word).

``tfidf_vector`` builds ``output_mode="tf_idf"``'s vector from the same tokens (all of them) and word pairs
(hashed from both words' bytes, as if written ``"a b"``). The export verifies the result against the Keras
model on held-out text (top-1 agreement), so any place where this and the regex tokenizer part shows there.
"""

from __future__ import annotations

import math

import numpy as np

from suite.compat import idf_weights

MAX_TOKEN_BYTES = 64
PUNCTUATION = b"!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"
CLITICS = (b"s", b"re", b"ve", b"ll", b"d", b"m")
BR_MAX_SPACES = 1  # IMDb writes <br />; each more space allowed costs graph size
OOV_ID, PAD_ID = 1, 0
_SEED = 20261129


WEIGHT_LIMIT = 2**24 // (255 * MAX_TOKEN_BYTES)  # 1028: a sum of 64 bytes times a weight stays below 2**24


def _weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    return (rng.integers(1, WEIGHT_LIMIT, MAX_TOKEN_BYTES, dtype=np.int64),
            rng.integers(1, WEIGHT_LIMIT, MAX_TOKEN_BYTES, dtype=np.int64))


def token_key(token: bytes) -> tuple[int, int] | None:
    """A token's key pair (what the graph computes from its bytes), or None when it is too long to look up."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        return None
    w1, w2 = _weights()
    b = np.frombuffer(token, dtype=np.uint8).astype(np.int64)
    return int(b @ w1[: len(b)]), int(b @ w2[: len(b)])


def vocabulary_table(vocabulary: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Sorted keys and their token ids for ``TextVectorization.get_vocabulary()`` (id 0 padding, 1 OOV).

    Returns ``(keys int32 [V, 2], ids int32 [V], unreachable)``, keys sorted: words too long to look up, or
    whose key another word already took (none in practice; counted so the export can say so), are left out.
    """
    keys: dict[tuple[int, int], int] = {}
    unreachable = 0
    for index, word in enumerate(vocabulary):
        if index <= OOV_ID and word in ("", "[UNK]"):  # padding and OOV (int mode), OOV (tf_idf mode)
            continue
        key = token_key(word.encode("utf-8"))
        if key is None or key in keys:
            unreachable += 1
            continue
        keys[key] = index
    order = sorted(keys)
    if not order:  # an empty table cannot be searched; this key is never produced (no token hashes to 0)
        order, keys = [(0, 0)], {(0, 0): OOV_ID}
    return (np.array(order, dtype=np.int32).reshape(-1, 2), np.array([keys[k] for k in order], dtype=np.int32),
            unreachable)


def encode(texts, length: int | None = None) -> np.ndarray:
    """Texts -> their UTF-8 bytes as a ``uint8 [batch, length]`` array padded with 0 (what the device feeds)."""
    raw = [t.encode("utf-8", "replace") if isinstance(t, str) else bytes(t) for t in texts]
    width = max([len(r) for r in raw] + [1]) if length is None else length
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for i, r in enumerate(raw):
        r = r[:width]
        out[i, : len(r)] = np.frombuffer(r, dtype=np.uint8)
    return out


def _shift(x, k: int):
    """``x[:, i + k]`` for every i (k < 0 looks back), zero (False) past the ends."""
    import tensorflow as tf

    if k == 0:
        return x
    pad = tf.zeros([tf.shape(x)[0], abs(k)], x.dtype)
    if k > 0:  # pad first, then cut: texts shorter than k still keep their length
        return tf.concat([x, pad], axis=1)[:, k:]
    return tf.concat([pad, x], axis=1)[:, : tf.shape(x)[1]]


def _in_range(b, lo: int, hi: int):
    import tensorflow as tf

    return tf.logical_and(tf.greater_equal(b, lo), tf.less_equal(b, hi))


# Two-byte capitals: (lead byte, first, last continuation byte, parity, change of the continuation byte, new
# lead byte or 0). Latin-1, Latin Extended-A, Greek and Cyrillic; the rare capitals whose lowercase changes
# length or block (U+0130, U+013F, U+0178) are left as they are.
CAPITALS = (
    (0xC3, 0x80, 0x96, None, 0x20, 0), (0xC3, 0x98, 0x9E, None, 0x20, 0),
    (0xC4, 0x80, 0xAF, 0, 1, 0), (0xC4, 0xB2, 0xB7, 0, 1, 0), (0xC4, 0xB9, 0xBE, 1, 1, 0),
    (0xC5, 0x81, 0x88, 1, 1, 0), (0xC5, 0x8A, 0xB7, 0, 1, 0), (0xC5, 0xB9, 0xBE, 1, 1, 0),
    (0xCE, 0x86, 0x86, None, 0x26, 0), (0xCE, 0x88, 0x8A, None, 0x25, 0), (0xCE, 0x8C, 0x8C, None, 0, 0xCF),
    (0xCE, 0x8E, 0x8F, None, -1, 0xCF), (0xCE, 0x91, 0x9F, None, 0x20, 0), (0xCE, 0xA0, 0xA1, None, -0x20, 0xCF),
    (0xCE, 0xA3, 0xAB, None, -0x20, 0xCF),
    (0xD0, 0x80, 0x8F, None, 0x10, 0xD1), (0xD0, 0x90, 0x9F, None, 0x20, 0), (0xD0, 0xA0, 0xAF, None, -0x20, 0xD1),
)


def _lowercase(b):
    """ASCII and the two-byte capitals of ``CAPITALS`` to lowercase, byte by byte (UTF-8 stays valid)."""
    import tensorflow as tf

    prev, nxt = _shift(b, -1), _shift(b, 1)
    out = tf.where(_in_range(b, 65, 90), b + 32, b)
    def capital(cont, lo, hi, parity):
        h = _in_range(cont, lo, hi)
        return h if parity is None else tf.logical_and(h, tf.equal(cont % 2, parity))

    for lead, lo, hi, parity, delta, new_lead in CAPITALS:
        if delta:
            out = tf.where(tf.logical_and(tf.equal(prev, lead), capital(b, lo, hi, parity)), b + delta, out)
        if new_lead:
            out = tf.where(tf.logical_and(tf.equal(b, lead), capital(nxt, lo, hi, parity)), new_lead, out)
    return out


def _table(members) -> np.ndarray:
    """A 256-entry 0/1 table of byte values: one gather classifies every byte."""
    table = np.zeros(256, np.int32)
    table[list(members)] = 1
    return table


_WORD = _table([*range(48, 58), *range(97, 123), 95])  # RE2's ASCII \w after lowercasing
_PUNCT = _table(PUNCTUATION)
_SPACE = _table([*range(0x21), 0x7F])  # control characters, space (and the padding 0), DEL


class _Shifts:
    """A byte tensor and its shifted copies, each made once: pattern tests share them (a smaller graph)."""

    def __init__(self, b):
        self.b = b
        self._at: dict[int, object] = {}

    def at(self, k: int):
        if k not in self._at:
            self._at[k] = _shift(self.b, k)
        return self._at[k]

    def match(self, pattern: bytes):
        """Where ``pattern`` starts."""
        import tensorflow as tf

        hit = None
        for k, byte in enumerate(pattern):
            eq = tf.equal(self.at(k), byte)
            hit = eq if hit is None else tf.logical_and(hit, eq)
        return hit

    def covered(self, pattern: bytes):
        """Every byte inside a match of ``pattern``."""
        import tensorflow as tf

        start = self.match(pattern)
        out = start
        for k in range(1, len(pattern)):
            out = tf.logical_or(out, _shift(start, -k))
        return out


def _is(table: np.ndarray, x):
    import tensorflow as tf

    return tf.equal(tf.gather(tf.constant(table), x), 1)


def _hashes(data, sequence_length: int | None, bigrams: bool = False) -> dict:
    """Key pairs and byte sizes of the first ``sequence_length`` (None: all) tokens of UTF-8 bytes ``[B, L]``.

    With ``bigrams``, also the key pairs of each token joined to the one before by a space (``"a b"``, as
    ``TextVectorization`` writes its n-grams), computed from the bytes of both: ``[B, sequence_length - 1]``.
    """
    import tensorflow as tf

    b = _lowercase(tf.cast(data, tf.int32))
    # spaces: control characters and space (padding 0 included), DEL, NEL (C2 85), U+2028/9 (E2 80 A8/A9)
    shifts = _Shifts(b)
    space = _is(_SPACE, b)
    for pattern in (b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9"):
        space = tf.logical_or(space, shifts.covered(pattern))
    b = tf.where(space, 0x20, b)
    # <br>, <br/>, <br />, <br >: spaces (after the control characters, as in standardize_text)
    shifts = _Shifts(b)
    for spaces in range(BR_MAX_SPACES + 1):
        for slash in (b"", b"/"):
            space = tf.logical_or(space, shifts.covered(b"<br" + b" " * spaces + slash + b">"))
    b = tf.where(space, 0x20, b)
    shifts = _Shifts(b)

    nt = tf.logical_and(shifts.match(b"n't"), tf.logical_not(_is(_WORD, shifts.at(3))))
    clitic = None
    for alt in CLITICS:
        after = 1 + len(alt)
        hit = tf.logical_and(shifts.match(b"'" + alt), tf.logical_not(
            tf.logical_and(_is(_WORD, shifts.at(after)), tf.logical_not(_shift(nt, after)))))
        clitic = hit if clitic is None else tf.logical_or(clitic, hit)
    punct = _is(_PUNCT, b)
    filled = tf.logical_not(space)
    start = tf.logical_and(filled, tf.reduce_any(tf.stack([
        tf.logical_not(_shift(filled, -1)), _shift(punct, -1), punct, nt, clitic]), axis=0))

    # token index of every byte; bytes of tokens past sequence_length and spaces go to an overflow slot
    if sequence_length is None:  # every token: a text of L bytes has at most L of them
        sequence_length = tf.shape(b)[1]
    slots = sequence_length + 1
    index = tf.cumsum(tf.cast(start, tf.int32), axis=1) - 1
    index = tf.where(filled, tf.minimum(index, sequence_length), sequence_length)
    batch = tf.shape(b)[0]
    length = tf.shape(b)[1]
    segment = index + tf.range(batch)[:, None] * slots
    flat_segment = tf.reshape(segment, [-1])
    n_segments = batch * slots
    position = tf.broadcast_to(tf.range(length)[None, :], tf.shape(b))
    # each token has one start byte, so a segment sum finds where it starts (ONNX has no segment min)
    first = tf.math.unsorted_segment_sum(tf.reshape(tf.where(start, position, 0), [-1]), flat_segment,
                                         n_segments)
    offset = position - tf.reshape(tf.gather(first, flat_segment), tf.shape(b))
    w1, w2 = _weights()
    # (the overflow slot sums several tokens' starts: its offsets are meaningless, and its sums are dropped)
    slot = tf.clip_by_value(offset, 0, MAX_TOKEN_BYTES - 1)
    values = tf.where(filled, b, 0)
    h1 = tf.math.unsorted_segment_sum(tf.reshape(values * tf.gather(tf.constant(w1, tf.int32), slot), [-1]),
                                      flat_segment, n_segments)
    h2 = tf.math.unsorted_segment_sum(tf.reshape(values * tf.gather(tf.constant(w2, tf.int32), slot), [-1]),
                                      flat_segment, n_segments)
    size = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(filled, tf.int32), [-1]), flat_segment, n_segments)
    out = {"h1": tf.reshape(h1, [batch, slots])[:, :sequence_length],
           "h2": tf.reshape(h2, [batch, slots])[:, :sequence_length],
           "size": tf.reshape(size, [batch, slots])[:, :sequence_length]}
    if bigrams:
        # a byte of token t sits at offset len(t - 1) + 1 + its own offset in "t-1 t"; the first half of the
        # pair's sum is token t - 1's own, plus the joining space at offset len(t - 1)
        before = tf.maximum(flat_segment - 1, 0)
        prev_size = tf.reshape(tf.gather(size, before), tf.shape(b))
        shifted = tf.clip_by_value(prev_size + 1 + offset, 0, MAX_TOKEN_BYTES - 1)
        w1c, w2c = tf.constant(w1, tf.int32), tf.constant(w2, tf.int32)
        second1 = tf.math.unsorted_segment_sum(tf.reshape(values * tf.gather(w1c, shifted), [-1]), flat_segment,
                                               n_segments)
        second2 = tf.math.unsorted_segment_sum(tf.reshape(values * tf.gather(w2c, shifted), [-1]), flat_segment,
                                               n_segments)
        size_b = tf.reshape(size, [batch, slots])
        space_slot = tf.clip_by_value(size_b[:, :-1], 0, MAX_TOKEN_BYTES - 1)
        pair1 = (tf.reshape(h1, [batch, slots])[:, :-1] + 32 * tf.gather(w1c, space_slot)
                 + tf.reshape(second1, [batch, slots])[:, 1:])
        pair2 = (tf.reshape(h2, [batch, slots])[:, :-1] + 32 * tf.gather(w2c, space_slot)
                 + tf.reshape(second2, [batch, slots])[:, 1:])
        left, right = size_b[:, :-1], size_b[:, 1:]
        out["pair_h1"] = pair1[:, : sequence_length - 1]
        out["pair_h2"] = pair2[:, : sequence_length - 1]
        # both tokens present; a pair longer than MAX_TOKEN_BYTES is out of vocabulary
        out["pair_size"] = tf.where(tf.logical_and(left > 0, right > 0), left + 1 + right, 0)[:, : sequence_length - 1]
    return out

def _lookup(h1, h2, size, keys: np.ndarray, ids: np.ndarray, oov: int):
    """Vocabulary ids of key pairs by binary search (``oov`` when absent or too long)."""
    import tensorflow as tf

    # lo = first index whose key pair is >= the token's (compared as (first, second))
    first_keys, second_keys = tf.constant(keys[:, 0], tf.int32), tf.constant(keys[:, 1], tf.int32)
    n = len(keys)
    lo = tf.zeros_like(h1)
    hi = tf.fill(tf.shape(h1), n)
    for _ in range(math.ceil(math.log2(n + 1))):
        mid = (lo + hi) // 2
        at = tf.minimum(mid, n - 1)
        k1, k2 = tf.gather(first_keys, at), tf.gather(second_keys, at)
        below = tf.logical_or(tf.less(k1, h1), tf.logical_and(tf.equal(k1, h1), tf.less(k2, h2)))
        lo = tf.where(below, mid + 1, lo)
        hi = tf.where(below, hi, mid)
    at = tf.minimum(lo, n - 1)
    found = tf.logical_and(tf.logical_and(tf.equal(tf.gather(first_keys, at), h1),
                                          tf.equal(tf.gather(second_keys, at), h2)), size <= MAX_TOKEN_BYTES)
    return tf.where(found, tf.gather(tf.constant(ids, tf.int32), at), oov)


def token_ids(data, keys: np.ndarray, ids: np.ndarray, sequence_length: int):
    """UTF-8 bytes ``[B, L]`` (0-padded) -> token ids ``[B, sequence_length]`` int64, as ``TextVectorization`` gives."""
    import tensorflow as tf

    t = _hashes(data, sequence_length)
    out = _lookup(t["h1"], t["h2"], t["size"], keys, ids, OOV_ID)
    return tf.cast(tf.where(t["size"] > 0, out, PAD_ID), tf.int64)


def tfidf_vector(data, keys: np.ndarray, ids: np.ndarray, idf: np.ndarray, ngrams: int):
    """UTF-8 bytes ``[B, L]`` -> ``TextVectorization(output_mode="tf_idf")``'s vector ``[B, V]`` (term 0: OOV)."""
    import tensorflow as tf

    t = _hashes(data, None, bigrams=ngrams == 2)  # every token, as Keras counts them
    terms = [(_lookup(t["h1"], t["h2"], t["size"], keys, ids, 0), t["size"] > 0)]
    if ngrams == 2:
        terms.append((_lookup(t["pair_h1"], t["pair_h2"], t["pair_size"], keys, ids, 0), t["pair_size"] > 0))
    vocab = len(idf)
    batch = tf.shape(data)[0]
    counts = None
    for term, present in terms:
        segment = tf.reshape(term + tf.range(batch)[:, None] * vocab, [-1])
        part = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(present, tf.float32), [-1]), segment, batch * vocab)
        counts = part if counts is None else counts + part
    return tf.reshape(counts, [batch, vocab]) * tf.constant(idf, tf.float32)[None, :]


def _reproducible(vec) -> dict | None:
    """What the graph needs from one ``TextVectorization``, or None when this module cannot reproduce it."""
    cfg = vec.get_config()
    if cfg.get("split") != "whitespace" or "standardize_text" not in str(cfg.get("standardize")):
        return None
    ngrams = cfg.get("ngrams") or 1
    keys, ids, unreachable = vocabulary_table(vec.get_vocabulary())
    spec = {"keys": keys, "ids": ids, "unreachable": unreachable, "mode": cfg.get("output_mode")}
    if spec["mode"] == "int" and ngrams == 1 and cfg.get("output_sequence_length"):
        return {**spec, "sequence_length": int(cfg["output_sequence_length"])}
    if spec["mode"] == "tf_idf" and ngrams in (1, 2):
        return {**spec, "ngrams": ngrams, "idf": np.asarray(idf_weights(vec), np.float32)}
    return None


def portable_graph(model):
    """The model from UTF-8 bytes, or None when its tokenizer is not one this module reproduces.

    Reproduced: ``TextVectorization`` layers with ``standardize_text`` and whitespace split, in ``int`` mode
    with a fixed ``output_sequence_length`` (cnn, bilstm, transformer) or in ``tf_idf`` mode with uni- or
    bigrams (tfidf_linear, tfidf_mlp), and ensembles of them. KerasHub presets keep their string graph. The
    function takes one text (batch 1: recurrent layers need a static batch to become LiteRT's builtin loop).
    """
    import keras
    import tensorflow as tf

    from suite.export.signatures import PortableGraph

    vectorizers = [layer for layer in model.layers if isinstance(layer, keras.layers.TextVectorization)]
    specs = [_reproducible(vec) for vec in vectorizers]
    if not specs or any(spec is None for spec in specs):
        return None
    outputs = [vec.output for vec in vectorizers]
    core = keras.Model(outputs[0] if len(outputs) == 1 else outputs, model.output, name=f"{model.name}_from_bytes")

    def features(data):
        out = []
        for spec in specs:
            if spec["mode"] == "int":
                out.append(token_ids(data, spec["keys"], spec["ids"], spec["sequence_length"]))
            else:
                out.append(tfidf_vector(data, spec["keys"], spec["ids"], spec["idf"], spec["ngrams"]))
        return out[0] if len(out) == 1 else out

    def carried(network):
        # autograph off: the Python loops here build the graph on purpose (and converting them takes seconds)
        @tf.function(input_signature=[tf.TensorSpec([1, None], tf.uint8, name="text_utf8")], autograph=False)
        def probabilities(text_utf8):
            return {"probabilities": tf.cast(network(features(text_utf8), training=False), tf.float32)}

        return probabilities

    unrolled = unrolled_copy(core)

    name = model.inputs[0].name.split(":")[0] if model.inputs else "text"

    def encode_feed(feed):
        value = np.asarray(feed[name] if name in feed else next(iter(feed.values()))).reshape(-1)
        item = value[0] if value.size else b""
        return {"text_utf8": encode([item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)])}

    reads = [f"the first {spec['sequence_length']} tokens" if spec["mode"] == "int" else
             f"TF-IDF of all its {'words and word pairs' if spec['ngrams'] == 2 else 'words'}" for spec in specs]
    unreachable = sum(spec["unreachable"] for spec in specs)
    sizes = " + ".join(f"{len(spec['keys']):,}" for spec in specs)
    note = (f"input text_utf8: the text's UTF-8 bytes, uint8 [1, length] (one text a call, any length; "
            f"{' and '.join(reads)} are read); the tokenizer runs inside in integer builtin ops "
            f"({sizes}-term hashed vocabulary"
            + (f", {unreachable} terms longer than {MAX_TOKEN_BYTES} bytes unreachable" if unreachable else "")
            + "; Latin, Greek and Cyrillic letters lowercased), see docs/EXPORT.md")
    return PortableGraph(function=carried(core), encode=encode_feed, note=note,
                         onnx_function=carried(unrolled) if unrolled is not core else None)


def unrolled_copy(core):
    """The same network with recurrent layers unrolled over the fixed sequence length, weights copied.

    A Keras 3 LSTM's loop becomes TensorList ops that tf2onnx cannot lower; unrolled, it is plain matmuls
    (the weights are shared, so the file does not grow). LiteRT keeps the loop: its WHILE op is builtin,
    and the unrolled graph ran 2.6x slower there and failed its int8 calibration.
    """
    import keras

    recurrent = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)

    def unroll(config: dict) -> dict:
        return {**config, "config": {**config["config"], "unroll": True}}

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.Bidirectional):
            cfg = {**cfg, "layer": unroll(cfg["layer"])}
            if cfg.get("backward_layer"):
                cfg["backward_layer"] = unroll(cfg["backward_layer"])
            return type(layer).from_config(cfg)
        if isinstance(layer, recurrent):
            return type(layer).from_config({**cfg, "unroll": True})
        return type(layer).from_config(cfg)

    if not any(isinstance(layer, (*recurrent, keras.layers.Bidirectional)) for layer in core.layers):
        return core
    copy = keras.models.clone_model(core, clone_function=clone)
    copy.set_weights(core.get_weights())
    return copy
