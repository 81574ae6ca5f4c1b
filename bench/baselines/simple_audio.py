"""The TensorFlow "Simple audio recognition: recognizing keywords" tutorial recipe, written from its public text.

STFT magnitude spectrogram (frame_length 255, frame_step 128) -> Resizing 32x32 -> Normalization (adapted on
the training spectrograms) -> Conv2D 32 -> Conv2D 64 -> MaxPool -> Dropout 0.25 -> Flatten -> Dense 128 ->
Dropout 0.5 -> Dense logits; Adam, sparse categorical cross-entropy, 10 epochs with early stopping
(patience 2), batch 64. Inputs are the same 1-second 16 kHz waveforms the suite's plugin sees.
"""

from __future__ import annotations

import time

import numpy as np


def spectrogram(waves):
    import tensorflow as tf

    spec = tf.abs(tf.signal.stft(waves, frame_length=255, frame_step=128))
    return spec[..., None]


def build_model(input_shape, n_classes: int, train_spectrograms):
    import keras

    norm = keras.layers.Normalization()
    norm.adapt(train_spectrograms)
    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Resizing(32, 32),
        norm,
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(n_classes),
    ], name="simple_audio")


def train_and_evaluate(train, val, test, n_classes: int, *, epochs: int = 10, seed: int = 0) -> dict:
    """Fit on (waves, labels) arrays as the tutorial does; return test accuracy, time, the model, and a curve of
    per-epoch test accuracy against training seconds (the clock stops while each epoch is scored)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    str_, sva, ste = (spectrogram(tf.constant(x, tf.float32)) for x in (xtr, xva, xte))
    model = build_model(str_.shape[1:], n_classes, str_)
    model.compile(optimizer=keras.optimizers.Adam(), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    curve: list[dict] = []

    def test_accuracy() -> float:
        return float(np.mean(np.argmax(model.predict(ste, batch_size=256, verbose=0), axis=1) == np.asarray(yte)))

    class Curve(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            curve.append({"epoch": epoch + 1, "seconds": now - self.start - self.paused,
                          "test_accuracy": test_accuracy()})
            self.paused += time.perf_counter() - now

    t = time.perf_counter()
    timer = Curve()
    model.fit(str_, ytr, validation_data=(sva, yva), epochs=epochs, batch_size=64, verbose=0, shuffle=True,
              callbacks=[keras.callbacks.EarlyStopping(patience=2), timer])
    seconds = time.perf_counter() - t - timer.paused
    return {"accuracy": test_accuracy(), "train_seconds": seconds, "model": model, "curve": curve}
