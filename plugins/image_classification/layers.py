"""Serialisable layers of the image plugin (imported through ``ImageClassificationTask.keras_modules``).

Kept in the plugin because Keras 3.15 has no random-resized-crop layer: ``RandomZoom`` + ``RandomTranslation``
approximate it but fill the borders with reflections, where a resized crop samples only real pixels and
varies the aspect ratio as well (Szegedy et al. 2015; the crop every ImageNet-style recipe trains with).
``ColorJitter`` replaces ``keras.layers.RandomColorJitter``, which converts to HSV and ran at 1,296 images/s
against this layer's 3,000+ on 128 px batches (2-core CPU), a fifth of a small model's training step.
"""

from __future__ import annotations

import math

import keras

PACKAGE = "suite_image"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomResizedCrop(keras.layers.Layer):
    """Training: a random crop of ``scale`` of the image's area and aspect ratio in ``ratio``, resized to
    ``height`` x ``width``, mirrored left-right half the time when ``flip`` (a swapped box: no extra pass over
    the pixels, where ``RandomFlip`` after the crop cost a third of the augmentation's time). Inference: the image resized to that size, centre-cropped to its aspect ratio first
    when ``crop_to_aspect_ratio`` (so evaluation and exports see what ``keras.layers.Resizing`` would give)."""

    def __init__(self, height: int, width: int, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3),
                 crop_to_aspect_ratio: bool = False, flip: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.crop_to_aspect_ratio, self.flip = bool(crop_to_aspect_ratio), bool(flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.resize = keras.layers.Resizing(self.height, self.width, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                                            dtype=self.dtype_policy, name="resize")

    def build(self, input_shape):
        self.resize.build(input_shape)
        self.built = True

    def call(self, images, training=None):
        if not training:
            return self.resize(images)
        import tensorflow as tf

        n = tf.shape(images)[0]
        area = keras.random.uniform((n,), *self.scale, seed=self.seed_generator)
        log_ratio = keras.random.uniform((n,), math.log(self.ratio[0]), math.log(self.ratio[1]),
                                         seed=self.seed_generator)
        ratio = tf.exp(log_ratio)
        # Box sides as fractions of the image's height and width; a side over 1 is clipped (a smaller crop).
        h = tf.minimum(1.0, tf.sqrt(area / ratio))
        w = tf.minimum(1.0, tf.sqrt(area * ratio))
        top = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - h)
        left = keras.random.uniform((n,), seed=self.seed_generator) * (1.0 - w)
        x0, x1 = left, left + w
        if self.flip:  # crop_and_resize mirrors a box whose x1 < x0
            mirror = keras.random.uniform((n,), seed=self.seed_generator) < 0.5
            x0, x1 = tf.where(mirror, x1, x0), tf.where(mirror, x0, x1)
        boxes = tf.stack([top, x0, top + h, x1], axis=1)
        # crop_and_resize takes no bfloat16: crop in float32, hand back the layer's compute dtype.
        out = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(n), (self.height, self.width))
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "scale": list(self.scale),
                "ratio": list(self.ratio), "crop_to_aspect_ratio": self.crop_to_aspect_ratio, "flip": self.flip,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ColorJitter(keras.layers.Layer):
    """Training only, on RGB pixels in [0, 1]: brightness, contrast and saturation each scaled by a factor drawn
    per image from [1 - factor, 1 + factor], in that order, then clipped to [0, 1]. Inference: identity."""

    def __init__(self, factor: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.factor, self.seed = float(factor), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.factor <= 0:
            return images
        from keras import ops

        n = ops.shape(images)[0]

        def draw():
            return ops.cast(keras.random.uniform((n, 1, 1, 1), 1 - self.factor, 1 + self.factor,
                                                 seed=self.seed_generator), images.dtype)

        x = images * draw()
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * draw() + mean
        grey = ops.mean(x, axis=-1, keepdims=True)
        x = (x - grey) * draw() + grey
        return ops.clip(x, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MatchBackground(keras.layers.Layer):
    """Inverts an image whose background is the opposite of the training images' (light paper where MNIST-like
    digits are light on black): a photo of a digit written in ink reaches the model as its training digits
    look. The background is the mean of the image's outermost rows and columns, on [0, 1] pixels; training
    images already match, so training is unchanged. No Keras layer does this."""

    def __init__(self, dark: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dark = bool(dark)

    def call(self, x):
        from keras import ops

        border = ops.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)  # N x (2W + 2H) x C
        light = ops.mean(border, axis=(1, 2)) > 0.5
        flip = light if self.dark else ops.logical_not(light)
        return ops.where(ops.reshape(flip, (-1, 1, 1, 1)), 1.0 - x, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dark": self.dark}
