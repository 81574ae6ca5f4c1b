"""Registered text preprocessing: the standardize function TextVectorization calls inside the model.

It is a registered Keras object (not a Lambda or a closure), so ``model.keras`` reloads with
``safe_mode=True`` and every export takes the raw sentence.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from suite.compat import lookup_layer

PACKAGE = "suite_sentiment"


@keras.saving.register_keras_serializable(package=PACKAGE, name="standardize_text")
def standardize_text(text):
    """Lowercase (Unicode-aware) and split off punctuation and English clitics, the way SST-2 is tokenized.

    ``"Didn't like it!"`` becomes ``"did n't like it !"``, so raw user text shares the vocabulary of
    Penn-Treebank-tokenized corpora (SST, IMDb after cleaning) and punctuation like ``!`` stays a token.
    """
    text = tf.strings.regex_replace(text, r"[\x00-\x1f\x7f\x85\x{2028}\x{2029}]", " ")  # control chars and line breaks (lower() stops at NUL)
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")  # IMDb reviews carry HTML line breaks
    text = tf.strings.regex_replace(text, r"n't\b", " n't")
    text = tf.strings.regex_replace(text, r"'(s|re|ve|ll|d|m)\b", r" '\1")
    # every punctuation character except the apostrophe of a clitic becomes its own token
    text = tf.strings.regex_replace(text, r"([!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~])", r" \1 ")
    return text


def tokenize(texts, ngrams: int = 1, batch_size: int = 4096):
    """Yield each text's tokens (n-grams up to ``ngrams`` joined by a space), exactly as TextVectorization sees them."""
    import numpy as np

    texts = np.asarray(texts, dtype=object)
    for start in range(0, len(texts), batch_size):
        pieces = tf.strings.split(standardize_text(tf.constant(texts[start : start + batch_size]))).to_list()
        for words in pieces:
            words = [w.decode("utf-8", "replace") for w in words]
            grams = list(words)
            for width in range(2, ngrams + 1):
                grams += [" ".join(words[i : i + width]) for i in range(len(words) - width + 1)]
            yield grams


def fast_adapt(layer, texts, *, ngrams: int = 1) -> int:
    """Set a TextVectorization layer's vocabulary (and IDF weights) from ``texts`` in one pass.

    Keras's ``adapt`` does the same job but runs batch by batch through lookup tables and takes minutes on
    SST-2 on a busy 2-core machine; counting in Python takes seconds. The vocabulary order (most frequent
    first, ties broken by the token) and the IDF formula ``log(1 + N / (1 + df))`` match Keras's own.
    """
    import collections
    import math

    counts: collections.Counter = collections.Counter()
    docs: collections.Counter = collections.Counter()
    n_docs = 0
    for grams in tokenize(texts, ngrams):
        n_docs += 1
        counts.update(grams)
        docs.update(set(grams))
    counts.pop("", None)
    counts.pop("[UNK]", None)
    limit = lookup_layer(layer).max_tokens
    mode = layer.get_config()["output_mode"]
    limit = (limit - 1 - (1 if mode == "int" else 0)) if limit else None  # OOV (and mask) slots
    vocab = sorted(counts, key=lambda t: (counts[t], t), reverse=True)[:limit]
    if not vocab:
        vocab = ["[EMPTY]"]  # a layer with no vocabulary cannot be built; this token never occurs
    if mode == "tf_idf":
        idf = [math.log(1 + n_docs / (1 + docs[t])) for t in vocab]
        layer.set_vocabulary(vocab, idf_weights=idf)
    else:
        layer.set_vocabulary(vocab)
    return len(vocab)


@tf.custom_gradient
def _independent_mean(members):
    """Mean over axis 0 whose gradient gives each member what its own cross-entropy would give it."""
    mean = tf.reduce_mean(members, axis=0)

    def grad(upstream):
        # A cross-entropy's gradient with respect to probabilities p is -y / p. Scaling the mean's gradient by
        # mean / member turns -y / mean into -y / member: each member learns as if trained alone.
        return upstream[None] * mean[None] / tf.maximum(members, 1e-7)

    return mean, grad


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleMean(keras.layers.Layer):
    """Serve the mean of several members' class probabilities; train each member on its own cross-entropy.

    Trained through the mean's loss, members would co-adapt like one bigger model and lose the diversity that
    makes averaging pay off; with this gradient and ``ProbabilityCrossentropy``, one ``fit`` trains them exactly
    as separate runs on the same batches would, and the model serves the average.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # probabilities stay float32 under mixed precision
        super().__init__(**kwargs)

    def call(self, inputs):
        return _independent_mean(tf.stack([tf.cast(p, tf.float32) for p in inputs], axis=0))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ProbabilityCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities taken as they are, ``-sum(y log p)``, with label smoothing.

    Keras's own renormalises ``p`` by its sum first; for probabilities that already sum to one the value is the
    same, but the renormalisation's gradient would hand every ``EnsembleMean`` member the ensemble's error
    instead of its own.
    """

    def __init__(self, label_smoothing=0.0, name="probability_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / tf.cast(tf.shape(y_true)[-1],
                                                                                            tf.float32)
        return -tf.reduce_sum(y_true * tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
