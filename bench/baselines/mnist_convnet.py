"""The keras.io "Simple MNIST convnet" recipe (F. Chollet), rewritten here from its public description.

Two 3x3 convolutions (32 and 64 filters, ReLU) each followed by 2x2 max-pooling, flatten, dropout 0.5, a
softmax layer; Adam, categorical cross-entropy, batch 128, 10% of the training set held out for validation.
The tutorial trains 15 epochs; the benchmark runs 3, the figure the image-classification issue quotes.
"""

from __future__ import annotations

import time

import numpy as np

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)
BATCH_SIZE = 128
EPOCHS = 3


def build_model():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )


def prepare(x: np.ndarray, y: np.ndarray):
    """The tutorial's preprocessing: scale to [0, 1], add the channel axis, one-hot labels."""
    import keras

    x = x.astype("float32") / 255.0
    if x.ndim == 3:
        x = np.expand_dims(x, -1)
    return x, keras.utils.to_categorical(y, NUM_CLASSES)


def train(x_train, y_train, *, epochs: int = EPOCHS, x_test=None, y_test=None, seed: int = 0):
    """Train the recipe; returns (model, curve) where curve lists per-epoch training seconds (wall and process
    CPU) and test accuracy.

    The clock stops while the per-epoch test accuracy is computed, so the curve's time is training time.
    """
    import keras

    keras.utils.set_random_seed(seed)
    x, y = prepare(x_train, y_train)
    model = build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    curve: list[dict] = []

    class Curve(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0
            self.cpu_start, self.cpu_paused = time.process_time(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            now, cpu = time.perf_counter(), time.process_time()
            point = {"epoch": epoch + 1, "seconds": now - self.start - self.paused,
                     "cpu_seconds": cpu - self.cpu_start - self.cpu_paused,
                     "val_accuracy": float(logs.get("val_accuracy", float("nan")))}
            if x_test is not None:
                point["test_accuracy"] = accuracy(model, x_test, y_test)
            curve.append(point)
            self.paused += time.perf_counter() - now
            self.cpu_paused += time.process_time() - cpu

    model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, validation_split=0.1, verbose=0, callbacks=[Curve()])
    return model, curve


def accuracy(model, x_test, y_test) -> float:
    x, _ = prepare(x_test, y_test)
    pred = model.predict(x, batch_size=1024, verbose=0).argmax(axis=1)
    return float((pred == np.asarray(y_test).reshape(-1)).mean())
