"""The sentiment tokenizer rebuilt in integer ops (what TFLite and ONNX carry) against TextVectorization itself."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from suite_plugins.sentiment import byte_tokenizer as bt
from suite_plugins.sentiment.layers import fast_adapt, standardize_text

# Documented limits (module docstring): these tokenize differently, and the export's agreement check shows it.
LIMITS = ["one<br  />six", "x" * 65, "Ｆullwidth", "İstanbul"]
TRICKY = [
    "Didn't like it!", "I DON'T know", "It's great; they're ok, we've, I'll, he'd, I'm", "n't", "'s", "it'sn't",
    "ÉCOLE Über straße Ñandú ŁÓDŹ ŒUVRE", "a\x85b c\u2028d e\u2029f", "one<br />two<BR>three<br/>four<br >five",
    "don't_ stop", "can't9", "rock'n'roll", "he said \"hello\" (world) [x] {y} a-b a_b a/b c\\d e|f ~g^h`i",
    "   lots   of    space  ", "tab\there\nnewline\rcr\x0bvt\x0cff", "😀 emoji ok 🎬!", "x" * 64 + " word",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞß", "the movie 's plot", "'re'll 'd'm 've's", "a.b,c;d:e?f!g",
    "NOT GOOD AT ALL", "wouldn't've", "x" * 64, "ΆΈΉΊΌΎΏ ΑΒΓΣΩ ПРИВЕТ ЁЖИК Їжак", "end.", ".start", "",
]


def _vectorizer(texts, sequence_length=16):
    import keras

    layer = keras.layers.TextVectorization(max_tokens=5000, standardize=standardize_text, output_mode="int",
                                           output_sequence_length=sequence_length)
    fast_adapt(layer, texts)
    return layer


def _mismatches(layer, texts):
    keys, ids, _ = bt.vocabulary_table(layer.get_vocabulary())
    ref = layer(np.array(texts, dtype=object)).numpy()
    got = bt.token_ids(bt.encode(texts), keys, ids, ref.shape[1]).numpy()
    return [(t, r.tolist(), g.tolist()) for t, r, g in zip(texts, ref, got, strict=True) if not (r == g).all()]


def test_tricky_text_gets_the_same_ids_as_text_vectorization():
    # the vocabulary holds every token of the tricky texts, so any tokenization difference changes an id
    layer = _vectorizer(TRICKY + ["the plot was good"])
    assert len(layer.get_vocabulary()) > 60
    assert _mismatches(layer, TRICKY + ["THE PLOT WAS GOOD", "unseen words here"]) == []


def test_documented_limits_differ_only_where_documented():
    layer = _vectorizer(TRICKY + LIMITS)
    assert [m[0] for m in _mismatches(layer, LIMITS)] == LIMITS
    assert _mismatches(layer, ["one<br />six", "x" * 64, "ｆullwidth", "istanbul"]) == []


def test_lowercase_matches_tensorflow_for_latin_greek_and_cyrillic():
    import tensorflow as tf

    blocks = [(0xC0, 0x180), (0x386, 0x3CF), (0x400, 0x460)]  # Latin-1, Extended-A; Greek; Cyrillic
    chars = [chr(c) for lo, hi in blocks for c in range(lo, hi)]
    ours = bt._lowercase(tf.constant(bt.encode(chars), tf.int32)).numpy()
    got = [bytes(row[row > 0].astype(np.uint8)).decode("utf-8") for row in ours]
    want = [t.decode("utf-8") for t in tf.strings.lower(chars, encoding="utf-8").numpy()]
    differ = [c for c, a, b in zip(chars, got, want, strict=True) if a != b]
    assert set(differ) <= {"\u0130", "\u013f", "\u0178"}, differ


def test_random_byte_soup_matches():
    rng = np.random.default_rng(0)
    alphabet = list("abcNT'tsrevldm <>/br!.,-_ \t\n") + ["É", "ß", "\x85", "\u2028", "😀"]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(400)]
    layer = _vectorizer(texts[:200], sequence_length=24)
    assert _mismatches(layer, texts) == []


def test_text_longer_than_the_sequence_keeps_its_first_tokens():
    layer = _vectorizer([f"w{i}" for i in range(40)], sequence_length=8)
    text = " ".join(f"w{i}" for i in range(40))
    assert _mismatches(layer, [text, text + "  ", "w1"]) == []


def test_vocabulary_table_is_sorted_and_unique():
    keys, ids, unreachable = bt.vocabulary_table(["", "[UNK]", "a", "b", "ab", "ba", "x" * 65])
    pairs = [tuple(k) for k in keys.tolist()]
    assert pairs == sorted(set(pairs)) and len(pairs) == 4
    assert int(keys.max()) < 2**24  # exact in float32: runtimes that compare integers through floats agree
    assert unreachable == 1  # longer than MAX_TOKEN_BYTES
    assert sorted(ids.tolist()) == [2, 3, 4, 5]
    assert bt.token_key(b"ab") != bt.token_key(b"ba")


def test_every_sst2_sentence_matches():
    root = Path(os.environ["SUITE_SHARED_DATA"]) / "sst2"
    if not root.is_dir():
        pytest.skip(f"shared data not found: {root} (set SUITE_SHARED_DATA)")
    texts = []
    for name in ("dev.tsv", "test.tsv"):
        with open(root / name, newline="") as fh:
            rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(rows)
            texts += [row[1] for row in rows]
    layer = _vectorizer(texts, sequence_length=64)
    assert len(texts) > 2000
    assert _mismatches(layer, texts) == []


def test_onnx_runs_the_tokenizer_exactly_with_a_large_vocabulary():
    """Every word of a 15,000-word vocabulary is found, in TF and in ONNX (60-bit int64 keys failed there)."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(1)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["", "[UNK]"] + sorted({"".join(rng.choice(letters, rng.integers(2, 12))) for _ in range(15000)})
    keys, ids, _ = bt.vocabulary_table(vocab)
    chunk = 2500

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.uint8, name="text_utf8")], autograph=False)
    def tokenize(data):
        return {"ids": bt.token_ids(data, keys, ids, chunk)}

    proto, _ = tf2onnx.convert.from_function(tokenize, input_signature=tokenize.input_signature, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for start in range(2, len(vocab), chunk):
        words = vocab[start : start + chunk]
        data = bt.encode([" ".join(words)])
        want = np.zeros((1, chunk), np.int64)
        want[0, : len(words)] = np.arange(start, start + len(words))
        np.testing.assert_array_equal(tokenize(data)["ids"].numpy(), want)
        np.testing.assert_array_equal(session.run(None, {"text_utf8": data})[0], want)


def _tfidf_layer(texts, ngrams):
    import keras

    layer = keras.layers.TextVectorization(max_tokens=20000, standardize=standardize_text, ngrams=ngrams,
                                           output_mode="tf_idf")
    fast_adapt(layer, texts, ngrams=ngrams)
    return layer


@pytest.mark.parametrize("ngrams", [1, 2])
def test_tfidf_vector_matches_text_vectorization(ngrams):
    # (a pair longer than 64 bytes is out of vocabulary by design: the 64-x token is left out here)
    texts = [t for t in TRICKY if "x" * 64 not in t] + ["a good movie", "not good at all , not good", "the the the"]
    layer = _tfidf_layer(texts, ngrams)
    keys, ids, _ = bt.vocabulary_table(layer.get_vocabulary())
    idf = np.asarray(layer._lookup_layer.idf_weights_const)
    probe = texts + ["unseen words and a good movie", "good movie good movie", ""]
    for text in probe:
        want = np.asarray(layer(np.array([text], dtype=object)))
        got = bt.tfidf_vector(bt.encode([text]), keys, ids, idf, ngrams).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=repr(text))
