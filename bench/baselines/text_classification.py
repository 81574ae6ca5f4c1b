"""The keras.io "Text classification from scratch" recipe (F. Chollet), written from its public description.

TextVectorization (custom standardization: lowercase, drop ``<br />`` and punctuation; 20,000 tokens; 500
steps), applied in the tf.data pipeline; Embedding(128) -> Dropout(0.5) -> two Conv1D(128, 7, strides 3) ->
GlobalMaxPooling1D -> Dense(128, relu) -> Dropout(0.5) -> Dense(1, sigmoid); Adam, binary cross-entropy,
batch 32, 3 epochs. The tutorial trains on IMDb; here it reads the same SST-2 files as the suite.
"""

from __future__ import annotations

import re
import string
import time

import numpy as np

MAX_FEATURES = 20000
EMBEDDING_DIM = 128
SEQUENCE_LENGTH = 500
BATCH_SIZE = 32
EPOCHS = 3


def custom_standardization(input_data):
    import tensorflow as tf

    lowercase = tf.strings.lower(input_data)
    stripped_html = tf.strings.regex_replace(lowercase, "<br />", " ")
    return tf.strings.regex_replace(stripped_html, f"[{re.escape(string.punctuation)}]", "")


def build_model():
    import keras

    inputs = keras.Input(shape=(None,), dtype="int64")
    x = keras.layers.Embedding(MAX_FEATURES, EMBEDDING_DIM)(inputs)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    predictions = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, predictions)


def train(train_texts, train_labels, *, val_texts=None, val_labels=None, test_texts=None, test_labels=None,
          epochs: int = EPOCHS, seed: int = 0):
    """Adapt the vectorizer, train, and return ``(vectorizer, model, curve)``.

    ``curve`` lists per-epoch training seconds (wall and CPU, adapt included in the first epoch's time) and
    test accuracy; the clock stops while the test split is scored.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    start, cpu0 = time.perf_counter(), time.process_time()
    vectorize_layer = keras.layers.TextVectorization(
        standardize=custom_standardization, max_tokens=MAX_FEATURES, output_mode="int",
        output_sequence_length=SEQUENCE_LENGTH)
    text_ds = tf.data.Dataset.from_tensor_slices(np.asarray(train_texts, dtype=str)).batch(BATCH_SIZE)
    vectorize_layer.adapt(text_ds)

    def vectorize(texts, labels):
        return vectorize_layer(tf.expand_dims(texts, -1)), labels

    def dataset(texts, labels, shuffle=False):
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(texts, dtype=str), np.asarray(labels, np.float32)))
        if shuffle:
            ds = ds.shuffle(len(texts), seed=seed)
        return ds.batch(BATCH_SIZE).map(vectorize, num_parallel_calls=tf.data.AUTOTUNE).cache().prefetch(10)

    train_ds = dataset(train_texts, train_labels, shuffle=True)
    val_ds = dataset(val_texts, val_labels) if val_texts is not None else None
    model = build_model()
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    curve: list[dict] = []
    paused = {"wall": 0.0, "cpu": 0.0}

    class Curve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now, cpu = time.perf_counter(), time.process_time()
            point = {"epoch": epoch + 1, "seconds": now - start - paused["wall"],
                     "cpu_seconds": cpu - cpu0 - paused["cpu"],
                     "val_accuracy": float((logs or {}).get("val_accuracy", float("nan")))}
            if test_texts is not None:
                point["test_accuracy"] = accuracy(vectorize_layer, model, test_texts, test_labels)
            curve.append(point)
            paused["wall"] += time.perf_counter() - now
            paused["cpu"] += time.process_time() - cpu

    model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=[Curve()])
    return vectorize_layer, model, curve


def accuracy(vectorize_layer, model, texts, labels) -> float:
    x = vectorize_layer(np.asarray(texts, dtype=str)[:, None])
    probs = model.predict(x, batch_size=512, verbose=0).reshape(-1)
    return float(((probs > 0.5).astype(np.int64) == np.asarray(labels).reshape(-1)).mean())
