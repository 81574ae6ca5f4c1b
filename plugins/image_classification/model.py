"""Models of the image plugin: in-model preprocessing, a residual CNN family and pretrained backbones.

Every layer is a built-in, serialisable Keras layer, so ``model.keras`` reloads with ``safe_mode=True`` and
exports take raw uint8 pixels. The last convolutional feature map always feeds the layer named ``pool``;
Grad-CAM reads it from there.
"""

from __future__ import annotations

import os
from pathlib import Path

from suite.errors import SuiteError

# name -> (stem width, stage widths, residual blocks per stage)
SCRATCH = {
    "cnn_small": (16, (16, 32), 1),
    "cnn_base": (24, (24, 48), 1),
    "cnn_large": (32, (32, 64, 128), 2),
}
# name -> (keras.applications constructor, substring of its cached no-top weights file)
PRETRAINED = {
    "mobilenet_v3_small": ("MobileNetV3Small", "mobilenet_v3_small"),
    "mobilenet_v3_large": ("MobileNetV3Large", "mobilenet_v3_large"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnetb0_notop"),
    "efficientnetv2_b0": ("EfficientNetV2B0", "efficientnetv2-b0_notop"),
}
POOL = "pool"


def augmentation_layers(aug: dict) -> list:
    """Random layers from the resolved augmentation settings; Keras runs them only when training."""
    import keras

    layers = []
    fill = aug.get("fill_mode", "reflect")
    if aug.get("flip", "none") != "none":
        mode = {"both": "horizontal_and_vertical"}.get(aug["flip"], aug["flip"])
        layers.append(keras.layers.RandomFlip(mode, name="aug_flip"))
    if aug.get("rotation", 0) > 0:
        layers.append(keras.layers.RandomRotation(aug["rotation"], fill_mode=fill, name="aug_rotation"))
    if aug.get("zoom", 0) > 0:
        layers.append(keras.layers.RandomZoom(aug["zoom"], fill_mode=fill, name="aug_zoom"))
    if aug.get("translation", 0) > 0:
        t = aug["translation"]
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode=fill, name="aug_translation"))
    if aug.get("contrast", 0) > 0:
        layers.append(keras.layers.RandomContrast(aug["contrast"], value_range=(0, 1), name="aug_contrast"))
    return layers


def preprocessor(config, meta: dict):
    """uint8 pixels of any size -> float image of ``image_size``: resize, rescale, augment (training only)."""
    import keras

    size = int(meta["image_size"])
    pretrained = config.model in PRETRAINED
    resize = keras.layers.Resizing(size, size, name="resize")
    rescale = keras.layers.Rescaling(1.0 / 255.0, name="rescale")
    aug = augmentation_layers(meta.get("augmentation", {}) if config.augment else {})
    to_rgb = keras.layers.Concatenate(axis=-1, name="gray_to_rgb") if pretrained and meta["channels"] == 1 else None
    # keras.applications models here take 0..255 pixels and normalise them themselves.
    to_255 = keras.layers.Rescaling(255.0, name="to_0_255") if pretrained else None

    def apply(x):
        # Rescale (which casts to float) before resizing: resizing uint8 differs between eager and graph mode.
        x = resize(rescale(x))
        if to_rgb is not None:
            x = to_rgb([x, x, x])
        for layer in aug:
            x = layer(x)
        return to_255(x) if to_255 is not None else x

    return apply


def _conv_bn_relu(x, filters: int, stride: int, name: str):
    import keras

    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, filters: int, name: str):
    """Two 3x3 convolutions with batch norm and an identity shortcut (He et al., 2016)."""
    import keras

    shortcut = x
    x = _conv_bn_relu(x, filters, 1, f"{name}_a")
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_b_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def scratch_backbone(config, meta: dict):
    """The from-scratch residual CNN: stem, max-pool, then stages that halve resolution and double width."""
    import keras

    stem, widths, blocks = SCRATCH[config.model]
    size = int(meta["image_size"])

    def apply(x):
        # Large inputs get a strided stem so the first stage does not run at full resolution.
        x = _conv_bn_relu(x, stem, 2 if size >= 96 else 1, "stem")
        x = keras.layers.MaxPooling2D(name="stem_pool")(x)
        for s, width in enumerate(widths):
            if s > 0 or width != stem:
                x = _conv_bn_relu(x, width, 2 if s > 0 else 1, f"stage{s}_down")
            for b in range(blocks):
                x = _residual_block(x, width, f"stage{s}_block{b}")
        return keras.layers.GlobalAveragePooling2D(name=POOL)(x)

    return apply


def _weights_cached(key: str) -> bool:
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return base.is_dir() and any(key in p.name for p in base.iterdir())


def pretrained_backbone(config, meta: dict):
    """A keras.applications ImageNet backbone without its top; frozen unless ``fine_tune``."""
    import keras

    from suite.data import _online

    ctor_name, key = PRETRAINED[config.model]
    if not _weights_cached(key) and (os.environ.get("SUITE_OFFLINE") == "1" or not _online()):
        raise SuiteError(
            f"model {config.model!r} needs ImageNet weights from storage.googleapis.com and there is no network: "
            f"use model=cnn_small, cnn_base or cnn_large, or put the weights file in ~/.keras/models"
        )
    size = int(meta["image_size"])
    ctor = getattr(keras.applications, ctor_name)
    kwargs = {"include_top": False, "weights": "imagenet", "input_shape": (size, size, 3)}
    if ctor_name.startswith(("MobileNetV3", "EfficientNetV2")):
        kwargs["include_preprocessing"] = True
    try:
        base = ctor(**kwargs)
    except Exception as err:
        raise SuiteError(f"could not load ImageNet weights for {config.model!r}: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    base.trainable = bool(config.fine_tune)

    def apply(x):
        # A frozen backbone keeps its batch-norm statistics (training=False), as the Keras fine-tuning guide says.
        x = base(x, training=False) if not config.fine_tune else base(x)
        return keras.layers.GlobalAveragePooling2D(name=POOL)(x)

    return apply
