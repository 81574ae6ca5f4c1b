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
# cnn_fast: block widths (w, 4w, 4w); w is picked by the time budget (see plan.py). 64 is airbench94's width.
FAST_WIDTHS = (16, 24, 32, 40, 48, 64)


def augmentation_layers(aug: dict) -> list:
    """Random geometric layers from the resolved augmentation settings; Keras runs them only when training."""
    import keras

    layers = []
    fill = aug.get("fill_mode", "reflect")
    if aug.get("flip", "none") != "none" and not _flip_in_crop(aug):
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


def colour_layer(aug: dict):
    """Brightness, contrast and saturation jitter of ``color`` on [0, 1] pixels (None when off)."""
    c = float(aug.get("color", 0) or 0)
    if c <= 0:
        return None
    from suite_plugins.image_classification.layers import ColorJitter

    return ColorJitter(c, name="aug_color")


def _flip_in_crop(aug: dict) -> bool:
    """A random resized crop mirrors left-right itself (see RandomResizedCrop)."""
    return float(aug.get("crop_scale", 0) or 0) > 0 and aug.get("flip") == "horizontal"


def resize_layer(size: int, aug: dict, policy: str):
    """How pixels of any size become ``size`` x ``size``: a random resized crop when training photos of varying
    size (``crop_scale`` > 0), else a plain resize; centre-cropped to a square first when ``policy`` is crop."""
    import keras

    crop = policy == "crop"
    if float(aug.get("crop_scale", 0) or 0) > 0:
        from suite_plugins.image_classification.layers import RandomResizedCrop

        return RandomResizedCrop(size, size, scale=(float(aug["crop_scale"]), 1.0), crop_to_aspect_ratio=crop,
                                 flip=_flip_in_crop(aug), name="resize")
    return keras.layers.Resizing(size, size, crop_to_aspect_ratio=crop, name="resize")


def preprocessor(config, meta: dict):
    """uint8 pixels of any size -> float image of ``image_size``: resize, rescale, augment (training only)."""
    import keras

    size = int(meta["image_size"])
    pretrained = config.model in PRETRAINED
    settings = meta.get("augmentation", {}) if config.augment else {}
    resize = resize_layer(size, settings, meta.get("resize_policy", "squash"))
    rescale = keras.layers.Rescaling(1.0 / 255.0, name="rescale")
    # Glyph models (meta["background"] from the training images) turn a dark-on-light photo of a digit into
    # the light-on-dark digits they learned (and the reverse).
    match = None
    if meta.get("background") in ("dark", "light"):
        from suite_plugins.image_classification.layers import MatchBackground

        match = MatchBackground(dark=meta["background"] == "dark", name="match_background")
    colour = colour_layer(settings) if int(meta["channels"]) == 3 else None
    aug = augmentation_layers(settings)
    to_rgb = keras.layers.Concatenate(axis=-1, name="gray_to_rgb") if pretrained and meta["channels"] == 1 else None
    # keras.applications models here take 0..255 pixels and normalise them themselves.
    to_255 = keras.layers.Rescaling(255.0, name="to_0_255") if pretrained else None

    # cnn_fast standardises each channel with the training data's mean and variance (measured at build time).
    norm = (keras.layers.Normalization(mean=meta["pixel_mean"], variance=meta["pixel_var"], name="standardise")
            if config.model == "cnn_fast" and "pixel_mean" in meta else None)

    def apply(x):
        # Rescale (which casts to float) before resizing: resizing uint8 differs between eager and graph mode.
        x = rescale(x)
        if match is not None:  # on the picture as it came, before resizing blurs its border
            x = match(x)
        x = resize(x)
        if colour is not None:  # on [0, 1] pixels, before standardising
            x = colour(x)
        if norm is not None:
            x = norm(x)
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


def fast_backbone(config, meta: dict):
    """cnn_fast: the airbench94 layout (Jordan 2024), the fastest known route to high CIFAR-10 accuracy per FLOP.

    A frozen 2x2 convolution initialised to whiten image patches (``whitening_kernel``), then three blocks of
    conv -> max-pool -> BN -> ReLU -> conv -> BN -> ReLU at widths (w, 4w, 4w), and a global max-pool. Inputs
    larger than 64 px enter through a stride-2 whitening layer so the first block runs at half resolution.
    """
    import keras

    width = int(config.width)
    channels = int(meta["channels"])
    stride = 2 if int(meta["image_size"]) > 64 else 1

    def apply(x):
        x = keras.layers.Conv2D(8 * channels, 2, strides=stride, padding="valid", name="whiten")(x)
        x = keras.layers.ReLU(name="whiten_relu")(x)
        for i, w in enumerate((width, 4 * width, 4 * width)):
            x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"block{i}_conv_a")(x)
            x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
            # No BN scale: ReLU after BN is scale-free, and fewer weights to decay (as airbench).
            x = keras.layers.BatchNormalization(momentum=0.9, scale=False, name=f"block{i}_bn_a")(x)
            x = keras.layers.ReLU(name=f"block{i}_relu_a")(x)
            x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"block{i}_conv_b")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, scale=False, name=f"block{i}_bn_b")(x)
            x = keras.layers.ReLU(name=f"block{i}_relu_b")(x)
        return keras.layers.GlobalMaxPooling2D(name=POOL)(x)

    return apply


def fast_forward_macs(width: int, size: int, channels: int = 3) -> float:
    """Multiply-adds of one cnn_fast forward pass at ``size`` px (what the budget planner costs a model by)."""
    side = size // 2 if size > 64 else size - 1
    macs = side * side * 4 * channels * 8 * channels
    c_in = 8 * channels
    for w in (width, 4 * width, 4 * width):
        macs += side * side * 9 * c_in * w
        side //= 2
        macs += side * side * 9 * w * w
        c_in = w
    return float(macs)


def whitening_kernel(images, channels: int, eps: float = 5e-4):
    """2x2 filters that whiten the patches of ``images`` (N x H x W x C floats, standardised): the eigenvectors
    of the patch covariance scaled by 1/sqrt(eigenvalue), each with its negative so ReLU keeps both signs."""
    import numpy as np

    x = np.asarray(images, dtype=np.float64)
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))  # N, H-1, W-1, C, 2, 2
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 4 * channels)
    if len(patches) > 200_000:
        patches = patches[np.random.default_rng(0).choice(len(patches), 200_000, replace=False)]
    eigenvalues, vectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    filters = (vectors / np.sqrt(np.clip(eigenvalues, 0, None) + eps)).T
    filters = np.concatenate([filters, -filters], axis=0)  # 8C filters
    return filters.reshape(8 * channels, 2, 2, channels).transpose(1, 2, 3, 0).astype(np.float32)


def _weights_cached(key: str) -> bool:
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return base.is_dir() and any(key in p.name for p in base.iterdir())


def pretrained_backbone(config, meta: dict):
    """A keras.applications ImageNet backbone without its top; frozen unless ``fine_tune``."""
    import keras

    from suite.data import online

    ctor_name, key = PRETRAINED[config.model]
    if not _weights_cached(key) and not online():
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
