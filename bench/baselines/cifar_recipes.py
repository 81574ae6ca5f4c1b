"""Two public Keras recipes for CIFAR-10, rewritten here from their public descriptions, for the quality-against-
time benchmark (bench/cifar10.py).

- ``tf_cnn_tutorial``: TensorFlow's "Convolutional Neural Network (CNN)" tutorial: three 3x3 convolutions (32, 64,
  64, ReLU) with 2x2 max-pooling after the first two, flatten, Dense 64 ReLU, Dense 10 logits; Adam at Keras'
  default rate, sparse cross-entropy from logits, batch 32, pixels scaled to [0, 1], no augmentation.
- ``keras_resnet20``: the Keras example "Trains a ResNet on the CIFAR10 dataset" (``cifar10_resnet.py``),
  ResNet v1 of depth 20 (3 stages of 3 residual blocks, 16/32/64 filters, batch norm, he_normal, L2 1e-4):
  Adam 1e-3 (constant for the first 80 of its 200 epochs, longer than any budget here), batch 32, the training
  pixel mean subtracted, random shifts of 10% and horizontal flips.

Both hold one learning rate over the budgets measured here, so the weights after t seconds of one long run are
the weights a run stopped at t would have: one run per recipe gives every point of its curve.
"""

from __future__ import annotations

import numpy as np

RECIPES = ("tf_cnn_tutorial", "keras_resnet20")
BATCH_SIZE = 32


def tf_cnn_tutorial():
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _resnet_layer(x, filters, strides=1, activation=True, bn=True):
    import keras
    from keras import layers

    x = layers.Conv2D(filters, 3, strides=strides, padding="same", kernel_initializer="he_normal",
                      kernel_regularizer=keras.regularizers.l2(1e-4))(x)
    if bn:
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x) if activation else x


def keras_resnet20(pixel_mean):
    """ResNet20 v1 of the Keras example; ``pixel_mean`` (32x32x3 in [0, 1]) is the training images' mean."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Normalization(axis=(1, 2, 3), mean=pixel_mean, variance=np.ones_like(pixel_mean))(x)  # pixel mean
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest")(x)
    x = layers.RandomFlip("horizontal")(x)
    x = _resnet_layer(x, 16)
    filters = 16
    for stage in range(3):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            y = _resnet_layer(x, filters, strides)
            y = _resnet_layer(y, filters, activation=False)
            if strides == 2:  # linear projection shortcut to match the changed dimensions
                x = layers.Conv2D(filters, 1, strides=2, padding="same", kernel_initializer="he_normal",
                                  kernel_regularizer=keras.regularizers.l2(1e-4))(x)
            x = layers.Activation("relu")(layers.Add()([x, y]))
        filters *= 2
    x = layers.Flatten()(layers.AveragePooling2D(8)(x))
    outputs = layers.Dense(10, kernel_initializer="he_normal")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def build(name: str, x_train: np.ndarray):
    if name == "tf_cnn_tutorial":
        return tf_cnn_tutorial()
    if name == "keras_resnet20":
        return keras_resnet20(x_train.astype(np.float32).mean(axis=0) / 255.0)
    raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
