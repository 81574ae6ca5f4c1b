"""Image classification: raw uint8 pixels in, class probabilities out; resizing and augmentation in-model."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import weakref
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np

from suite.config import TaskConfig
from suite.data import DataBundle, DataSource, stratified_split_indices, tfds_load
from suite.errors import ConfigError, DataSourceError, InputError
from suite.task import ClassificationTask, Drawing, Example, Explanation
from suite_plugins.image_classification import images
from suite_plugins.image_classification.model import (
    POOL,
    PRETRAINED,
    SCRATCH,
    fast_backbone,
    preprocessor,
    pretrained_backbone,
    scratch_backbone,
)
from suite_plugins.image_classification.plan import is_glyphs, resize_policy

ModelName = Literal["auto", "cnn_fast", "cnn_small", "cnn_base", "cnn_large", "mobilenet_v3_small",
                    "mobilenet_v3_large", "efficientnet_b0", "efficientnetv2_b0"]
N_EXAMPLES = 4
_GRADCAM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its Grad-CAM sub-model


@dataclasses.dataclass
class ImageClassificationConfig(TaskConfig):
    """Fields left at their defaults are chosen per data set by the plan (plan.py): cnn_base's recipe for grey
    glyphs, cnn_fast sized to the time budget for photos. Set a field to keep it."""

    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 3e-3
    lr_schedule: Literal["constant", "cosine", "warmup_cosine"] = "warmup_cosine"
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    model: ModelName = "auto"
    width: int = 0
    optimizer: Literal["auto", "adamw", "sgd"] = "auto"
    image_size: int = 0
    channels: int = 0
    augment: bool = True
    flip: Literal["auto", "none", "horizontal", "vertical", "both"] = "auto"
    rotation: float = -1.0
    zoom: float = -1.0
    translation: float = -1.0
    contrast: float = -1.0
    crop_scale: float = -1.0
    color: float = -1.0
    dropout: float = 0.2
    fine_tune: bool = False

    ui_fields = ("model", "epochs", "batch_size", "learning_rate", "image_size", "augment", "fine_tune")
    field_help = {
        "model": "The network. auto: cnn_base's recipe for grey glyphs (digits, letters), cnn_fast sized to "
                 "the time budget for photos; the rest are fixed sizes or pretrained backbones (need the "
                 "network once).",
        "width": "Channels of cnn_fast's first block (later blocks double it); 0 = chosen by the time budget.",
        "optimizer": "auto: AdamW, or SGD with momentum when the plan picks cnn_fast.",
        "image_size": "Side the model resizes every image to; 0 = chosen from the data (the native side of "
                      "same-size images, kept within 28-128; up to 128 for photos of varying size; 224 for "
                      "pretrained backbones).",
        "channels": "1 (grey) or 3 (colour); 0 = 1 when every image is grey, else 3.",
        "augment": "Random flips, turns, zooms, shifts, crops and colour changes while training (master "
                   "switch for the fields below).",
        "flip": "Random mirror images; auto: horizontal for photos, none for digit-like glyphs (a mirrored 2 "
                "is not a 2).",
        "rotation": "Largest random turn, as a fraction of a full turn (0.05 = 18 degrees); < 0 = auto.",
        "zoom": "Largest random zoom, as a fraction of the side; < 0 = auto.",
        "translation": "Largest random shift, as a fraction of the side; < 0 = auto.",
        "contrast": "Largest random contrast change (0.2 = up to 20%); < 0 = auto.",
        "crop_scale": "Smallest area share of a random resized crop (0.35 = crops down to 35% of the image); "
                      "0 = off, < 0 = auto.",
        "color": "Strength of random brightness, contrast and saturation jitter on colour photos; 0 = off, "
                 "< 0 = auto.",
        "dropout": "Share of the head's inputs dropped at random while training.",
        "fine_tune": "Pretrained backbones: train the backbone too, not only the new head (use a small "
                     "learning rate, about 1e-4).",
    }
    field_units = {"image_size": "px"}

    def validate(self) -> None:
        super().validate()
        if self.image_size != 0 and not 8 <= self.image_size <= 512:
            raise ConfigError(f"image_size must be 0 (auto) or in [8, 512], got {self.image_size}")
        if self.width < 0:
            raise ConfigError(f"width must be 0 (auto) or > 0, got {self.width}")
        if self.channels not in (0, 1, 3):
            raise ConfigError(f"channels must be 0 (auto), 1 or 3, got {self.channels}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("rotation", "zoom", "translation", "contrast", "crop_scale", "color"):
            if getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be < 1 (a fraction; negative means auto), got {getattr(self, name)}")


# ---- data helpers ------------------------------------------------------------------------------------
def _resolve(config: ImageClassificationConfig, sizes: Counter, channels: int) -> dict:
    """Image size, channels and augmentation from the config's values and what the data looks like; ``sizes``
    counts every sampled image's (height, width), so shares and the median weigh each image once."""
    channels = config.channels or channels
    if config.image_size:
        size = config.image_size
    elif config.model in PRETRAINED:
        size = 224
    elif len(sizes) == 1:
        size = int(np.clip(max(next(iter(sizes))), 28, 128))
    else:  # photos of varying size: cnn_fast's plan picks up to 128 px, the older models train at 96
        size = 128 if config.model in ("auto", "cnn_fast") else 96
    # Grey, small images are digits and glyphs: a mirrored 2 is not a 2; photos flip fine.
    glyphs = channels == 1 and size <= 64
    auto = {
        "flip": "none" if glyphs else "horizontal",
        "rotation": 0.03 if glyphs else 0.05,
        "zoom": 0.1,
        "translation": 0.08 if glyphs else 0.05,
        "contrast": 0.0 if glyphs else 0.1,
        "crop_scale": 0.0,
        "color": 0.0,
    }
    aug = {k: (getattr(config, k) if (getattr(config, k) != "auto" if k == "flip" else getattr(config, k) >= 0)
               else v) for k, v in auto.items()}
    aug["fill_mode"] = "constant" if glyphs else "reflect"
    return {"image_size": int(size), "channels": int(channels), "augmentation": aug,
            "resize_policy": resize_policy(sizes),
            "median_side": int(np.median([min(hw) for hw in sizes.elements()])) if sizes else 0}


def _standardise(x: np.ndarray) -> np.ndarray:
    """Arrays of N images (NxHxW or NxHxWxC, uint8 or floats in [0,1] or [0,255]) -> uint8 NxHxWxC."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DataSourceError(f"images must be NxHxW or NxHxWxC with C in 1, 3, 4; got shape {x.shape}")
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
        if x.size and x.max() <= 1.0:
            x = x * 255.0
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x


def _labels(y: np.ndarray, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y).reshape(-1)
    if names is not None:
        return y.astype(np.int64), names
    values = np.unique(y)
    index = {v: i for i, v in enumerate(values.tolist())}
    return np.array([index[v] for v in y.tolist()], dtype=np.int64), [str(v) for v in values.tolist()]


def _example_meta(x: np.ndarray, y: np.ndarray, names: list[str]) -> list[dict]:
    """A few test images (one per class first) as base64 PNG, kept in meta for the app and tests."""
    chosen, seen = [], set()
    for i, label in enumerate(y.tolist()):
        if label not in seen:
            chosen.append(i)
            seen.add(label)
        if len(chosen) == N_EXAMPLES:
            break
    out = []
    for i in chosen:
        img = x[i]
        if max(img.shape[:2]) > 128:
            scale = 128 / max(img.shape[:2])
            img = images.resize_array(img, (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))))
        out.append({"png": base64.b64encode(images.encode_png(img)).decode(), "label": names[int(y[i])]})
    return out


def _decode_files(files: list[tuple[str, str]], max_side: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decode every listed image as RGB; returns images, their class names and the files that failed.

    Images are shrunk to ``max_side`` while decoding so a folder of camera photos fits in memory.
    """
    arrays, labels, skipped = [], [], []
    for path, label in files:
        try:
            arrays.append(images.decode_image(Path(path).read_bytes(), 3, max_side=max_side))
            labels.append(label)
        except (InputError, OSError):
            skipped.append(path)
    return arrays, labels, skipped


def _list_folder(root: Path) -> dict[str, list[tuple[str, str]]]:
    """``split -> [(path, class)]``: ``root/{train,val,test}/<class>/`` when there is a train folder, else
    everything under ``root/<class>/`` as ``all``. Names only: nothing is decoded here."""
    from suite.streaming import scan_class_folders

    split_dirs = {k: root / k for k in ("train", "val", "test") if (root / k).is_dir()}
    if "train" in split_dirs:
        return {k: scan_class_folders(d, images.EXTENSIONS) for k, d in split_dirs.items()}
    return {"all": scan_class_folders(root, images.EXTENSIONS)}


def _header_sample(files: list[tuple[str, str]], n: int = 256) -> tuple[Counter, bool]:
    """Sizes (height, width) and whether all are grey, read from the headers of up to ``n`` files spread over
    the list (PIL opens lazily: no pixel is decoded)."""
    step = max(1, len(files) // n)
    return _header_sample_bytes(path for path, _ in files[::step][:n])


def _header_sample_bytes(items) -> tuple[Counter, bool]:
    """Sizes (how many images have each) and greyness from image headers; ``items`` are paths or encoded bytes."""
    import io

    from PIL import Image

    sizes, grey = Counter(), True
    for item in items:
        try:
            with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as img:
                sizes[(img.height, img.width)] += 1
                grey = grey and img.mode in ("L", "I;16", "I", "1", "LA")
        except Exception:  # noqa: BLE001 - an unreadable file is skipped when it is met in training
            continue
    return sizes, grey


def _cache_key(names: list[str], settings: dict) -> str:
    from suite.streaming import files_key

    return files_key(names, settings)


class ImageClassificationTask(ClassificationTask):
    name = "image_classification"
    title = "Image classification"
    description = ("Classify photos, scans or digits into your classes: a small residual CNN trained from "
                   "scratch, or a fine-tuned ImageNet backbone. Takes any image size, grey or colour.")
    input_kind = "image"
    keras_modules = ("suite_plugins.image_classification.layers",)
    sample_seconds = 14.0
    sample_description = ("scikit-learn's 1,797 tiny (8x8) scanned handwritten digits: it knows only single "
                          "centred digits, and gets fewer than half of other people's handwriting right (real "
                          "MNIST digits), so train on your own images for real use")
    distill_students = {"small": {"model": "cnn_small"}, "fast": {"model": "cnn_fast"}}
    config_class = ImageClassificationConfig
    data_formats = (
        "A folder with one sub-folder per class (`root/<class>/*.png|jpg|jpeg|bmp|gif|webp`), optionally split "
        "into `root/train/<class>/`, `root/val/<class>/` and `root/test/<class>/` (otherwise a seeded stratified "
        "split); or an `.npz` in the keras.datasets layout (`x_train`, `y_train`, `x_test`, `y_test`; the "
        "validation split is carved from train; optional `class_names`). Grey or colour, any size."
    )
    tfds_examples = ("tfds:mnist", "tfds:fashion_mnist", "tfds:cifar10", "tfds:tf_flowers")
    upload_types = ("png", "jpg", "jpeg", "bmp", "gif", "webp")
    # 8x8 digits hold no detail above 16 px: a small model at 16 px trains to ~99% in well under a minute.
    sample_overrides = {"model": "cnn_small", "image_size": 16, "epochs": 8, "batch_size": 64, "learning_rate": 5e-3}

    # ---- data --------------------------------------------------------------------------------------
    def load_data(self, source: DataSource, config: ImageClassificationConfig) -> DataBundle:
        if source.kind == "sample":
            return self._load_sample(config)
        if source.kind == "tfds":
            return self._load_tfds(source, config)
        path = source.path
        if path.is_file() and path.suffix.lower() == ".npz":
            return self._load_npz(path, config)
        if path.is_dir():
            from suite.packed import is_packed

            return self._load_packed(path, config) if is_packed(path) else self._load_folder(path, config)
        raise DataSourceError(f"{path} is neither a folder of class folders nor an .npz file")

    def _bundle(self, splits: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str],
                config: ImageClassificationConfig, extra: dict | None = None) -> DataBundle:
        """Numpy splits of uint8 images (same size within the data) -> tf.data bundle with meta."""
        import tensorflow as tf

        if len(names) < 2:
            raise DataSourceError(f"image classification needs at least 2 classes, found {len(names)}")
        x_train = splits["train"][0]
        channels = x_train.shape[-1]
        sizes = Counter({tuple(splits[k][0].shape[1:3]): len(splits[k][0]) for k in splits if len(splits[k][0])})
        meta = {"class_names": list(names), **_resolve(config, sizes, channels), "native_size": list(x_train.shape[1:3])}
        if meta["channels"] != channels:  # the config asked for another channel count
            splits = {k: (_convert_channels(x, meta["channels"]), y) for k, (x, y) in splits.items()}
        test_x, test_y = splits.get("test", splits["train"])
        meta["examples"] = _example_meta(test_x, test_y, names)
        if is_glyphs(meta):
            meta["background"] = background(x_train[:2000])
        meta.update(extra or {})

        def ds(k):
            if k not in splits or not len(splits[k][0]):
                return None
            x, y = splits[k]
            return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))

        counts = {k: int(len(v[0])) for k, v in splits.items()}
        return DataBundle(ds("train"), ds("val"), ds("test"), meta, counts=counts)

    def _split(self, x, y, config, *, test: bool) -> dict:
        tr, va, te = stratified_split_indices(y, config.val_fraction, config.test_fraction if test else 0.0, seed=0)
        out = {"train": (x[tr], y[tr]), "val": (x[va], y[va])}
        if test:
            out["test"] = (x[te], y[te])
        return out

    def _load_sample(self, config) -> DataBundle:
        """scikit-learn's 1,797 real 8x8 handwritten digits (in its wheel), framed as MNIST frames its digits:
        scaled to 20x20 in the middle of a black 28x28 (they fill their 8x8 frame; MNIST's digits, and digits
        drawn on the app's pad, have a margin)."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        small = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        x = np.zeros((len(small), 28, 28, 1), np.uint8)
        x[:, 4:24, 4:24] = np.stack([images.resize_array(img, (20, 20)) for img in small])
        y = digits.target.astype(np.int64)
        return self._bundle(self._split(x, y, config, test=True), [str(i) for i in range(10)], config,
                            {"source": "sklearn.datasets.load_digits"})

    def _load_npz(self, path: Path, config) -> DataBundle:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataSourceError(f"cannot read {path} as .npz: {str(err).splitlines()[0]}") from None
        with data:
            keys = set(data.files)
            if not {"x_train", "y_train"} <= keys:
                raise DataSourceError(f"{path} must hold x_train and y_train (keras.datasets layout); "
                                      f"it has {', '.join(sorted(keys))}")
            x = _standardise(data["x_train"])
            names = [str(n) for n in data["class_names"].tolist()] if "class_names" in keys else None
            y_all = [data["y_train"]] + ([data["y_test"]] if "y_test" in keys else [])
            x_test = _standardise(data["x_test"]) if {"x_test", "y_test"} <= keys else None
        if len(x) != len(y_all[0].reshape(-1)):
            raise DataSourceError(f"{path}: x_train has {len(x)} images but y_train {y_all[0].size} labels")
        if names is None:  # one label mapping over train and test
            _, names = _labels(np.concatenate([v.reshape(-1) for v in y_all]))
            lookup = {n: i for i, n in enumerate(names)}
            y_all = [np.array([lookup[str(v)] for v in a.reshape(-1).tolist()], dtype=np.int64) for a in y_all]
        else:
            y_all = [a.reshape(-1).astype(np.int64) for a in y_all]
        y = y_all[0]
        if x_test is not None:
            splits = self._split(x, y, config, test=False)
            splits["test"] = (x_test, y_all[1])
        else:
            splits = self._split(x, y, config, test=True)
        return self._bundle(splits, names, config, {"source": str(path)})

    def _load_folder(self, root: Path, config) -> DataBundle:
        """Small folders are decoded into memory (fastest); larger ones stream from the files (or a disk cache
        of decoded images), as ``suite.streaming.choose_cache`` decides from their decoded size."""
        from suite.streaming import available_memory, choose_cache

        parts = _list_folder(root)
        every = [f for files in parts.values() for f in files]
        if not parts.get("train", parts.get("all")):
            raise DataSourceError(f"no readable images under {root}: expected {root}/<class>/*.png|jpg|... "
                                  f"or {root}/train/<class>/...")
        sizes, grey = _header_sample(every)
        channels = config.channels or (1 if grey else 3)
        resolved = _resolve(config.replace(channels=channels), sizes or Counter({(256, 256): 1}), channels)
        side = resolved["image_size"]
        target = next(iter(sizes)) if len(sizes) == 1 else (side, side)
        choice = choose_cache(config.cache, n_examples=len(every), example_bytes=target[0] * target[1] * channels,
                              available_bytes=available_memory())
        if choice.kind != "memory":
            return self._stream_folder(root, config, resolved, target, choice, max(1, len(sizes)))
        bundle = self._memory_folder(root, parts, config)
        bundle.meta["cache"] = choice.to_dict()
        return bundle

    def _memory_folder(self, root: Path, parts: dict, config) -> DataBundle:
        max_side = max(256, config.image_size)
        decoded = {k: _decode_files(files, max_side) for k, files in parts.items()}
        skipped = [f for _, _, s in decoded.values() for f in s]
        names = sorted({label for _, labels, _ in decoded.values() for label in labels})
        if not decoded.get("train", decoded.get("all"))[0]:
            raise DataSourceError(f"no readable images under {root}: expected {root}/<class>/*.png|jpg|... "
                                  f"or {root}/train/<class>/...")
        every = [a for arrays, _, _ in decoded.values() for a in arrays]
        grey = all(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]) for a in every)
        channels = 1 if grey else 3
        sizes = Counter(a.shape[:2] for a in every)
        resolved = _resolve(config.replace(channels=config.channels or channels), sizes, channels)
        # Mixed sizes are resized once here so batches stack; the model resizes again (a no-op then).
        target = next(iter(sizes)) if len(sizes) == 1 else (resolved["image_size"],) * 2
        index = {n: i for i, n in enumerate(names)}

        def stack(arrays, labels):
            crop = resolved["resize_policy"] == "crop"
            x = np.stack([images.resize_array(a, target, crop=crop) for a in arrays]) if arrays else \
                np.zeros((0, *target, 3), np.uint8)
            x = x[..., :1] if channels == 1 else x
            return x, np.array([index[label] for label in labels], dtype=np.int64)

        if "all" in decoded:
            x, y = stack(*decoded["all"][:2])
            splits = self._split(x, y, config, test=True)
        else:
            splits = {k: stack(*decoded[k][:2]) for k in decoded}
            if "val" not in splits:
                tr, va, _ = stratified_split_indices(splits["train"][1], config.val_fraction, 0.0, seed=0)
                x, y = splits["train"]
                splits["train"], splits["val"] = (x[tr], y[tr]), (x[va], y[va])
        return self._bundle(splits, names, config, {"source": str(root), "skipped_files": len(skipped),
                                                    "native_sizes": len(sizes),
                                                    "resize_policy": resolved["resize_policy"],
                                                    "median_side": resolved["median_side"]})

    def _stream(self, config, resolved: dict, target: tuple[int, int], choice, n_sizes: int, names: list[str],
                make, counts: dict[str, int], source: str, cache_names: list[str]) -> DataBundle:
        """A bundle decoded by tf.data each epoch (or once into a disk cache): memory stays bounded.

        ``make(split, decode, skips, seed, share)`` gives the split's decoded dataset; ``share`` is a
        ``(workers, index)`` pair for a worker's files, or None.
        """
        from suite.streaming import SkipLog

        channels = int(resolved["channels"])
        shape = (int(target[0]), int(target[1]), channels)
        skips = SkipLog(config.max_bad_fraction)
        max_side = max(256, config.image_size)

        def decode(raw: bytes) -> np.ndarray:
            return images.resize_array(images.decode_image(raw, channels, max_side=max_side), shape[:2],
                                       crop=resolved["resize_policy"] == "crop")

        def ds(split, seed=None, share=None):
            return make(split, decode, shape, skips, seed, share) if counts.get(split) else None

        shown, seen, looked = [], set(), []
        test = ds("test") or ds("val")
        for x, y in test.take(200).as_numpy_iterator():
            looked.append(x)
            if int(y) not in seen:
                shown.append((x, int(y)))
                seen.add(int(y))
            if len(shown) == N_EXAMPLES:
                break
        examples = (_example_meta(np.stack([x for x, _ in shown]), np.array([y for _, y in shown]), names)
                    if shown else [])
        meta = {"class_names": names, **resolved, "native_size": list(target), "examples": examples,
                "source": source, "native_sizes": n_sizes, "cache": choice.to_dict(), "cacheable": False,
                "example_bytes": int(np.prod(shape)),
                "cache_key": _cache_key(cache_names, {"shape": shape, "max_side": max_side, "decoder": "pil-1",
                                                        "resize": resolved["resize_policy"]})}
        if is_glyphs(meta) and looked:
            meta["background"] = background(np.stack(looked))
        return DataBundle(ds("train", seed=0), ds("val"), ds("test"), meta, counts=dict(counts),
                          shard_train=lambda n, i: ds("train", seed=0, share=(n, i)), skips=skips)

    def _stream_folder(self, root: Path, config, resolved, target, choice, n_sizes) -> DataBundle:
        from suite.streaming import class_folder_splits, file_dataset, worker_files

        splits = class_folder_splits(root, images.EXTENSIONS, val_fraction=config.val_fraction,
                                     test_fraction=config.test_fraction)
        names = sorted({c for files in splits.values() for _, c in files})
        index = {n: i for i, n in enumerate(names)}

        def make(split, decode, shape, skips, seed, share):
            files = splits[split] if share is None else worker_files(splits[split], *share)
            return file_dataset([p for p, _ in files], [index[c] for _, c in files],
                                lambda p: decode(Path(p).read_bytes()), shape=shape, dtype="uint8", skips=skips,
                                shuffle_seed=seed)

        counts = {k: len(v) for k, v in splits.items()}
        return self._stream(config, resolved, target, choice, n_sizes, names, make, counts, str(root),
                            [p for files in splits.values() for p, _ in files])

    def _load_packed(self, root: Path, config) -> DataBundle:
        """A folder written by ``suite data pack``: the shards' encoded images, decoded while training."""
        from suite import packed
        from suite.streaming import available_memory, choose_cache, decoded, worker_files

        man = packed.manifest(root)
        shards, counts = man["shards"], {k: int(v) for k, v in man["counts"].items()}
        if not counts.get("train"):
            raise DataSourceError(f"{root} holds no training examples")
        raws = [raw for _, raw, _ in packed.records(root, shards["train"]).take(256).as_numpy_iterator()]
        sizes, grey = _header_sample_bytes(raws)
        channels = config.channels or (1 if grey else 3)
        resolved = _resolve(config.replace(channels=channels), sizes or Counter({(256, 256): 1}), channels)
        target = next(iter(sizes)) if len(sizes) == 1 else (resolved["image_size"],) * 2
        choice = choose_cache(config.cache, n_examples=sum(counts.values()),
                              example_bytes=target[0] * target[1] * channels, available_bytes=available_memory())

        def make(split, decode, shape, skips, seed, share):
            files = shards.get(split, []) if share is None else worker_files(shards.get(split, []), *share)
            return decoded(packed.records(root, files, shuffle_seed=seed), decode, shape=shape, dtype="uint8",
                           skips=skips)

        return self._stream(config, resolved, target, choice, max(1, len(sizes)), list(man["class_names"]), make,
                            counts, str(root), [str(root / s) for v in shards.values() for s in v])

    def _load_tfds(self, source: DataSource, config) -> DataBundle:
        import keras
        import tensorflow as tf

        (train, val, test), info = tfds_load(source, ["train", "validation", "test"])
        feat = info.features
        keys = list(feat.keys())  # noqa: SIM118 (a FeaturesDict, not a dict)
        image_key = next((k for k in keys if k in ("image", "img")), None)
        if image_key is None or "label" not in keys:
            raise DataSourceError(f"TFDS data set {source.tfds_name!r} has no image/label features")
        names = list(feat["label"].names)
        shape = feat[image_key].shape
        channels = int(shape[-1]) if shape[-1] in (1, 3) else 3
        counts = {k: int(info.splits[k].num_examples) for k in list(info.splits)}
        n_train = counts.get("train", 0)
        if val is None:
            n_val = max(1, int(n_train * config.val_fraction))
            val, train = train.take(n_val), train.skip(n_val)
            counts["validation"], counts["train"] = n_val, n_train - n_val
        if test is None:
            n_test = max(1, int(counts["train"] * config.test_fraction))
            test, train = train.take(n_test), train.skip(n_test)
            counts["test"], counts["train"] = n_test, counts["train"] - n_test
        uniform = None not in shape[:2]
        resolved = _resolve(config.replace(channels=config.channels or channels),
                            {tuple(shape[:2])} if uniform else set(), channels)
        size = resolved["image_size"]

        def fix(x, y):
            x = tf.cast(x, tf.uint8)
            if not uniform:
                x = keras.ops.image.resize(x, (size, size), crop_to_aspect_ratio=resolved["resize_policy"] == "crop")
                x = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
            if resolved["channels"] == 1 and channels == 3:
                x = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(x, tf.float32))), tf.uint8)
            elif resolved["channels"] == 3 and channels == 1:
                x = tf.image.grayscale_to_rgb(x)
            return x, tf.cast(y, tf.int64)

        splits = {k: d.map(fix, num_parallel_calls=tf.data.AUTOTUNE) for k, d in
                  (("train", train), ("val", val), ("test", test))}
        ex = list(splits["test"].take(64).as_numpy_iterator())
        meta = {"class_names": names, **resolved, "native_size": list(shape[:2]), "source": source.spec,
                "examples": _example_meta(np.stack([e[0] for e in ex]), np.array([e[1] for e in ex]), names)}
        counts = {"train": counts["train"], "val": counts.get("validation", 0), "test": counts.get("test", 0)}
        return DataBundle(splits["train"], splits["val"], splits["test"], meta, counts=counts)

    # ---- plan ----------------------------------------------------------------------------------------
    def plan(self, config, data, explicit):
        from suite.strategy import cpu_has_bf16
        from suite_plugins.image_classification.plan import plan_image

        if is_glyphs(data.meta) and config.model in ("auto", "cnn_base"):  # no probe needed
            return plan_image(config, data.meta, int(data.counts.get("train") or 1), explicit, flops_per_s=1.0)
        policy = "mixed_bfloat16" if cpu_has_bf16() else None  # None: the policy the strategy chose
        return plan_image(config, data.meta, int(data.counts.get("train") or 1), explicit,
                          flops_per_s=_probe_speed(data.meta, policy))

    def optimizer(self, config, steps_per_epoch):
        """SGD with Nesterov momentum for cnn_fast (the fast-CIFAR recipe), AdamW otherwise."""
        if config.optimizer != "sgd":
            return super().optimizer(config, steps_per_epoch)
        import keras

        from suite.schedules import make_learning_rate

        return keras.optimizers.SGD(make_learning_rate(config, steps_per_epoch), momentum=0.9, nesterov=True,
                                    weight_decay=config.weight_decay)

    # ---- model -------------------------------------------------------------------------------------
    def build_model(self, config, data):
        """cnn_fast standardises pixels with the training data's statistics and whitens 2x2 patches with a
        frozen first layer, both measured on a sample of training images here."""
        if config.model != "cnn_fast":
            return super().build_model(config, data)
        import dataclasses as dc

        from suite_plugins.image_classification.model import whitening_kernel

        sample = _pixel_sample(data.train, int(data.meta["image_size"]))
        mean, var = sample.mean(axis=(0, 1, 2)), sample.var(axis=(0, 1, 2)) + 1e-6
        data = dc.replace(data, meta={**data.meta, "pixel_mean": mean.tolist(), "pixel_var": var.tolist()})
        model = super().build_model(config, data)
        whiten = model.get_layer("whiten")
        kernel = whitening_kernel((sample - mean) / np.sqrt(var), int(data.meta["channels"]))
        whiten.set_weights([kernel, np.zeros(kernel.shape[-1], np.float32)])
        whiten.trainable = False
        return model

    def build_inputs(self, config, meta):
        import keras

        # Any height and width: the model resizes, so users and exports feed pixels as they are.
        return keras.Input(shape=(None, None, int(meta["channels"])), dtype="uint8", name="image")

    def build_preprocessor(self, config, data):
        return preprocessor(config, data.meta)

    def build_backbone(self, config, meta):
        if config.model == "cnn_fast":
            return fast_backbone(config, meta)
        if config.model in SCRATCH:
            return scratch_backbone(config, meta)
        return pretrained_backbone(config, meta)

    # ---- prediction --------------------------------------------------------------------------------
    def decode_input(self, raw, meta):
        if isinstance(raw, np.ndarray):  # pixels from Python callers (the app's canvas, notebooks)
            if raw.ndim not in (2, 3) or min(raw.shape[:2]) < 1:
                raise InputError(f"an image array must be HxW or HxWxC, got shape {raw.shape}")
            try:
                arr = _standardise(raw[None])
            except DataSourceError as err:
                raise InputError(str(err)) from None
            return _convert_channels(arr, int(meta["channels"]))[0]
        if isinstance(raw, str):
            # Text is never taken as a path: a typed string must not make the server read local files.
            # (Callers with a file pass a pathlib.Path to Predictor, which reads it with a size cap.)
            raise InputError("an image must be given as the file's bytes, not as text")
        if not isinstance(raw, (bytes, bytearray)):
            raise InputError(f"an image must be bytes or an array, not {type(raw).__name__}")
        return images.decode_image(bytes(raw), int(meta["channels"]))

    def stack_inputs(self, inputs):
        """Images of different sizes are resized to the first one's size (the model resizes anyway)."""
        if len({a.shape for a in inputs}) > 1:
            target = inputs[0].shape[:2]
            inputs = [images.resize_array(a, target) for a in inputs]
        return super().stack_inputs(inputs)

    def preview(self, x):
        return images.encode_png(np.asarray(x))

    def input_notes(self, raw, meta):
        """A colour picture for a grayscale model, a size far from the training images' (the model resizes
        every input to its own size, so detail is lost or invented), from the header; and for glyph models,
        whose pictures are small, an inverted background (from the pixels)."""
        if not isinstance(raw, (bytes, bytearray)):
            return []
        import io

        from PIL import Image

        with Image.open(io.BytesIO(bytes(raw))) as img:
            width, height, mode = img.width, img.height, img.mode
            # a grey picture stored as RGB (a drawing from the app's pad, a screenshot) loses nothing; the pixels
            # are looked at only for a grey model, and only for pictures of at most a megapixel
            colour = (int(meta.get("channels", 3)) == 1 and mode not in ("L", "LA", "1", "I", "I;16", "F", "P")
                      and (width * height > 1 << 20 or _has_colour(img)))
        notes = []
        if colour:
            notes.append("The colour picture was converted to grayscale: the model was trained on grayscale images.")
        if meta.get("background") in ("dark", "light"):
            with contextlib.suppress(InputError):
                seen = background(images.decode_image(bytes(raw), int(meta.get("channels", 1))))
                if seen != meta["background"]:
                    notes.append(f"The picture is {'dark on light' if seen == 'light' else 'light on dark'}: the "
                                 "model inverts it, as its training images are "
                                 f"{'light on dark' if seen == 'light' else 'dark on light'}.")
        native = meta.get("native_size") or []
        if len(native) == 2 and min(native) > 0:
            scale = max(width / native[1], height / native[0], native[1] / width, native[0] / height)
            if scale > 2:
                notes.append(f"The {width}x{height} picture was resized to the training images' {native[1]}x"
                             f"{native[0]}: the model sees it at that size.")
        return notes

    def examples(self, meta):
        return [Example(f"{e['label']} ({i + 1})", base64.b64decode(e["png"]), expected=e["label"])
                for i, e in enumerate(meta.get("examples", []))]

    def warmup_inputs(self, meta):
        """The first example and a copy of another size: with two sizes seen, the compiled call (reduce_retracing)
        traces once for every image size, so a user's own photo is not slow either."""
        first = super().warmup_inputs(meta)
        if not first:
            return []
        pixels = images.decode_image(first[0], int(meta.get("channels", 1)))
        height, width = pixels.shape[:2]
        return [first[0], images.encode_png(images.resize_array(pixels, (height + 5, width + 7)))]

    def drawing(self, meta):
        """Grey glyph models (MNIST-like) get bright strokes on black, as their digits are; a thick pen, since
        the pad is shrunk to the model's size (280 px to 28: a 22 px stroke becomes MNIST's 2 px). Photo
        models get a dark pen on white for sketches."""
        if not meta:
            return None
        if is_glyphs(meta):
            return Drawing(background="#000000", pen="#ffffff", pen_width=22,
                           hint="Draw one character large, in the middle of the pad, then let go to predict.")
        return Drawing(background="#ffffff", pen="#000000", pen_width=8,
                       hint="Sketch something, then let go to predict (the model was trained on photos: "
                            "expect a rough guess).")

    # ---- export ------------------------------------------------------------------------------------
    def serving_signatures(self, model, meta):
        """The default pixel signatures plus ``image_bytes``: one encoded PNG/JPEG/GIF/BMP file in, label out.

        The model resizes, so the decoded image goes in at its own size. Unlike ``decode_input`` this graph
        cannot check the declared size before decoding; servers should cap the request size.
        """
        import tensorflow as tf

        signatures = super().serving_signatures(model, meta)
        class_names = tf.constant([str(c) for c in meta["class_names"]])
        channels = int(meta["channels"])

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
        def image_bytes(data):
            image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
            probs = tf.cast(model(image[None], training=False), tf.float32)
            top = tf.argmax(probs, axis=-1)
            return {"probabilities": probs, "label": tf.gather(class_names, top), "score": tf.reduce_max(probs, -1)}

        signatures["image_bytes"] = image_bytes
        return signatures

    # ---- explanation ---------------------------------------------------------------------------------
    def explain(self, model, x, meta):
        """Grad-CAM (Selvaraju et al., 2017) on the last convolutional feature map, at the input's size."""
        import tensorflow as tf

        image = np.asarray(x, dtype=np.uint8)
        grad_model = _gradcam_model(model)
        batch = tf.convert_to_tensor(image[None])
        with tf.GradientTape() as tape:
            fmap, logits = grad_model(batch, training=False)
            cls = int(tf.argmax(logits[0]))
            score = logits[:, cls]
        grads = tape.gradient(score, fmap)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.reduce_sum(fmap * weights[:, None, None, :], axis=-1))[0]
        cam = tf.image.resize(cam[..., None], image.shape[:2], method="bilinear")[..., 0].numpy()
        top = float(cam.max())
        heat = np.clip(cam / top, 0.0, 1.0) if top > 0 else np.zeros_like(cam)
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        label = meta["class_names"][cls]
        return Explanation(kind="heatmap", data={"image": rgb, "heatmap": heat.astype(np.float32)},
                           caption=f"Grad-CAM: regions that raised the score of {label!r}")


def _probe_speed(meta: dict, policy: str | None) -> float:
    """How fast cnn_fast trains here (FLOP/s of its own cost): the reference candidate of ``plan.py`` timed for
    about a second. Should the probe fail (an exotic backend), the matmul speed scaled as measured on CPUs."""
    from types import SimpleNamespace

    from suite.budget import measure_flops_per_s, measure_train_flops_per_s
    from suite_plugins.image_classification.model import fast_backbone, fast_forward_macs
    from suite_plugins.image_classification.plan import MATMUL_EFFICIENCY, REFERENCE_WIDTH, probe_size

    size, channels = probe_size(meta), int(meta["channels"])
    probe_meta = {"channels": channels, "image_size": size}
    try:
        return measure_train_flops_per_s(fast_backbone(SimpleNamespace(width=REFERENCE_WIDTH), probe_meta),
                                         (size, size, channels), 6 * fast_forward_macs(REFERENCE_WIDTH, size, channels),
                                         classes=len(meta["class_names"]), batch=128 if size <= 64 else 64,
                                         policy=policy)
    except Exception:  # noqa: BLE001 - a plan from the cruder probe beats no plan
        return measure_flops_per_s() * MATMUL_EFFICIENCY


def _gradcam_model(model):
    """A model from the raw input to (last conv feature map, logits), cached on the model object."""
    import keras

    cached = _GRADCAM.get(model)
    if cached is not None:
        return cached
    try:
        fmap = model.get_layer(POOL).input
        logits = model.get_layer("logits").output
    except ValueError:
        raise InputError("this model has no 'pool' and 'logits' layers to compute Grad-CAM from") from None
    grad_model = keras.Model(model.inputs, [fmap, logits])
    _GRADCAM[model] = grad_model  # not an attribute: Keras would track it as a sub-layer of the model
    return grad_model


def _has_colour(img) -> bool:
    """Whether an RGB(A) picture has any pixel whose channels differ by more than JPEG noise."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool((rgb.max(axis=-1) - rgb.min(axis=-1)).max(initial=0) > 8)


def background(x: np.ndarray) -> str:
    """``dark`` or ``light`` when at least 98% of the uint8 images (N x H x W x C, or one H x W [x C]) agree on
    the mean of their outermost rows and columns, else ``mixed``. The model's ``MatchBackground`` layer inverts
    inputs of the other kind, which is safe only where the background says nothing about the class (digits,
    letters), not where it varies (bright against dark patches)."""
    x = np.asarray(x, dtype=np.float32)
    x = x[None, ..., None] if x.ndim == 2 else x[None] if x.ndim == 3 else x  # one HxW or HxWxC image
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    light = float(np.mean(border.reshape(len(x), -1).mean(axis=1) >= 127.5))
    return "light" if light >= 0.98 else "dark" if light <= 0.02 else "mixed"


def _pixel_sample(ds, size: int, n: int = 2048) -> np.ndarray:
    """Up to ``n`` training images as floats in [0, 1] at ``size`` px (what the model sees after resizing)."""
    import tensorflow as tf

    def resized(x, _y):
        return tf.image.resize(tf.cast(x, tf.float32) / 255.0, (size, size))

    batch = next(iter(ds.take(n).map(resized, num_parallel_calls=tf.data.AUTOTUNE).batch(n)))
    return batch.numpy().astype(np.float64)


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    grey = np.rint(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.clip(grey, 0, 255).astype(np.uint8)[..., None]


