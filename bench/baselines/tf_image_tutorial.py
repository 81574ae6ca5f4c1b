"""TensorFlow's "Image classification" tutorial (tensorflow.org/tutorials/images/classification), rewritten from
its public text for the photos benchmark (bench/photos.py): ``image_dataset_from_directory`` at 180x180 (whole
image resized), batch 32, ``cache().shuffle(1000).prefetch``; RandomFlip("horizontal"), RandomRotation(0.1),
RandomZoom(0.1); Rescaling(1/255); three 3x3 'same' convolutions (16, 32, 64, ReLU) each followed by 2x2
max-pooling; Dropout(0.2); Flatten; Dense 128 ReLU; Dense logits; Adam at Keras' default rate, sparse
cross-entropy from logits; 15 epochs.
"""

from __future__ import annotations

IMAGE_SIZE = (180, 180)
BATCH_SIZE = 32
EPOCHS = 15


def datasets(train_dir, test_dir, seed: int = 123):
    """The tutorial's train/validation split (80/20 of ``train_dir``) and the held-out test folder."""
    import keras
    import tensorflow as tf

    kw = {"image_size": IMAGE_SIZE, "batch_size": BATCH_SIZE}
    train = keras.utils.image_dataset_from_directory(train_dir, validation_split=0.2, subset="training", seed=seed,
                                                     **kw)
    val = keras.utils.image_dataset_from_directory(train_dir, validation_split=0.2, subset="validation", seed=seed,
                                                   **kw)
    test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False, **kw)
    names = train.class_names
    auto = tf.data.AUTOTUNE
    return (train.cache().shuffle(1000).prefetch(auto), val.cache().prefetch(auto), test.cache().prefetch(auto),
            names)


def build(num_classes: int):
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((*IMAGE_SIZE, 3)),
        layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Dropout(0.2),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(num_classes),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model
