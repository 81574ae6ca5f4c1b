"""The image classification plugin: the shared plugin suite plus data sources, Grad-CAM and offline backbones."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from suite.data import parse_source
from suite.errors import ConfigError, DataSourceError, InputError, SuiteError
from suite.testing import PluginTestSuite


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class TestImageClassificationPlugin(PluginTestSuite):
    task_name = "image_classification"
    overrides = {"model": "cnn_small", "image_size": 16, "epochs": 3, "batch_size": 64, "learning_rate": 5e-3}
    bad_inputs = [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a not really", b"plain text, named x.jpg",
                  declared_png(30000, 30000)]

    def test_explain_gives_normalised_heatmap_at_input_size(self, predictor):
        example = predictor.task.examples(predictor.meta)[0]
        img = Image.open(io.BytesIO(example.value)).resize((30, 40))  # non-square, not the training size
        explanation = predictor.explain(_png(np.asarray(img)))
        assert explanation.kind == "heatmap"
        heat, image = explanation.data["heatmap"], explanation.data["image"]
        assert heat.shape == (40, 30) and image.shape == (40, 30, 3) and image.dtype == np.uint8
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
        assert heat.max() == pytest.approx(1.0) or heat.max() == 0.0
        assert heat.std() > 0, "a trained model's Grad-CAM should not be flat"

    def test_unusual_pngs_predict_and_a_broken_one_is_one_line(self, predictor):
        rng = np.random.default_rng(4)
        rgba = _png(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8))
        assert predictor.predict([rgba])[0]["label"] in predictor.meta["class_names"]
        plain = _png(rng.integers(0, 256, (20, 20), dtype=np.uint8))
        idat = plain.index(b"IDAT") + 4
        broken = plain[:idat] + bytes(b ^ 0x5A for b in plain[idat : idat + 40]) + plain[idat + 40 :]
        with pytest.raises(InputError) as err:
            predictor.predict([broken])
        assert "\n" not in str(err.value)

    def test_inputs_of_any_size_predict_together(self, predictor):
        example = predictor.task.examples(predictor.meta)[0]
        big = np.asarray(Image.open(io.BytesIO(example.value)).resize((90, 70)))
        results = predictor.predict([example.value, _png(big)])
        assert len(results) == 2 and all(r["label"] in predictor.meta["class_names"] for r in results)

    def test_report_has_classification_metrics_and_mistake_previews(self, trained_run):
        test = trained_run.metrics["test"]
        for key in ("accuracy", "macro_f1", "top5_accuracy", "per_class", "confusion_matrix"):
            assert key in test
        assert np.asarray(test["confusion_matrix"]).shape == (10, 10)
        assert test["accuracy"] > 0.3, "three epochs on the digits should be far above chance (0.1)"
        for mistake in test["confident_mistakes"]:
            assert mistake.get("preview_png"), "mistakes carry a PNG preview"


@pytest.fixture(scope="module")
def task():
    from suite.registry import get

    return get("image_classification")


def _write_tree(root, sizes, colour: bool, per_class: int = 6):
    """Two classes that differ visibly: bright squares and dark ones, in mixed formats and sizes."""
    rng = np.random.default_rng(1)
    formats = ["png", "jpg", "bmp", "webp", "gif"]
    for c, (name, level) in enumerate((("bright", 220), ("dark", 30))):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            arr = np.clip(level + rng.integers(-10, 10, (h, w, 3)), 0, 255).astype(np.uint8)
            if colour:
                arr[..., c] = 255 - arr[..., c]  # colour data: channels differ
            else:
                arr[..., 1] = arr[..., 0]
                arr[..., 2] = arr[..., 0]
            ext = formats[i % len(formats)]
            img = Image.fromarray(arr)
            img.save(d / f"{i}.{ext}", format={"jpg": "JPEG"}.get(ext, ext.upper()))
    (root / "bright" / "notes.txt").write_text("ignored: not an image")
    (root / "bright" / "broken.png").write_bytes(b"not a png")


def test_folder_tree_with_split_subfolders(task, tmp_path):
    for split in ("train", "val", "test"):
        _write_tree(tmp_path / split, [(20, 30), (24, 24)], colour=True, per_class=5)
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    meta = bundle.meta
    assert meta["class_names"] == ["bright", "dark"]
    assert meta["channels"] == 3 and meta["skipped_files"] == 3  # one broken png per split
    assert bundle.counts == {"train": 10, "val": 10, "test": 10}  # 5 images per class; the broken png is skipped
    x, y = next(iter(bundle.train))
    assert x.dtype.name == "uint8" and x.shape[-1] == 3
    assert x.shape[0] == x.shape[1] == meta["image_size"]  # mixed sizes resized once to the model's size
    assert meta["augmentation"]["flip"] == "horizontal"  # colour photos flip


def test_folder_tree_without_splits_is_split_stratified(task, tmp_path):
    _write_tree(tmp_path, [(16, 16)], colour=False, per_class=10)
    config = task.make_config({"val_fraction": 0.2, "test_fraction": 0.2})
    bundle = task.load_data(parse_source(str(tmp_path)), config)
    assert bundle.meta["channels"] == 1 and bundle.meta["image_size"] == 28  # grey, native 16 px -> auto 28
    assert bundle.meta["augmentation"]["flip"] == "none"  # grey glyph-like data is not mirrored
    assert sum(bundle.counts.values()) == 20  # the broken png and the .txt are left out
    for split in ("val", "test"):
        labels = sorted(int(y) for _, y in getattr(bundle, split))
        assert set(labels) == {0, 1}, f"{split} should hold both classes"
    x, _ = next(iter(bundle.train))
    assert tuple(x.shape) == (16, 16, 1)  # uniform data keeps its native size; the model resizes
    again = task.load_data(parse_source(str(tmp_path)), config)
    assert [int(y) for _, y in again.test] == [int(y) for _, y in bundle.test]  # seeded


def test_empty_folder_is_one_clear_error(task, tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(DataSourceError, match="no readable images"):
        task.load_data(parse_source(str(tmp_path)), task.make_config())


def test_npz_keras_layout(task, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 255, (60, 12, 12), dtype=np.uint8), y_train=np.arange(60) % 3 + 5,
             x_test=rng.integers(0, 255, (9, 12, 12), dtype=np.uint8), y_test=np.arange(9) % 3 + 5)
    bundle = task.load_data(parse_source(str(path)), task.make_config({"val_fraction": 0.2}))
    assert bundle.meta["class_names"] == ["5", "6", "7"]
    assert bundle.counts == {"train": 48, "val": 12, "test": 9}
    assert sorted({int(y) for _, y in bundle.test}) == [0, 1, 2]
    x, _ = next(iter(bundle.train))
    assert tuple(x.shape) == (12, 12, 1) and x.dtype.name == "uint8"
    assert len(task.examples(bundle.meta)) == 3


def test_npz_float_colour_images_and_bad_layout(task, tmp_path):
    path = tmp_path / "colour.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((20, 8, 8, 3), dtype=np.float32), y_train=np.arange(20) % 2)
    bundle = task.load_data(parse_source(str(path)), task.make_config())
    x, _ = next(iter(bundle.train))
    assert x.dtype.name == "uint8" and x.shape[-1] == 3 and int(np.asarray(x).max()) > 1
    assert "test" in bundle.counts  # no x_test: a test split is carved out
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((3, 4, 4)))
    with pytest.raises(DataSourceError, match="x_train and y_train"):
        task.load_data(parse_source(str(bad)), task.make_config())


def test_tfds_offline_is_one_clear_error(task, monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataSourceError) as err:
        task.load_data(parse_source("tfds:mnist"), task.make_config())
    assert "no network" in str(err.value) and "\n" not in str(err.value)


def test_pretrained_backbone_offline_is_one_clear_error(task, monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached weights
    config = task.make_config({"model": "mobilenet_v3_small", "fine_tune": True})
    bundle = task.load_data(parse_source("sample"), config)
    assert bundle.meta["image_size"] == 224
    with pytest.raises(SuiteError) as err:
        task.build_model(config, bundle)
    message = str(err.value)
    assert "\n" not in message and "no network" in message and "cnn_small" in message


def test_model_takes_raw_uint8_of_any_size_and_augments_only_in_training(task):
    import keras

    config = task.make_config({"model": "cnn_small", "image_size": 16})
    bundle = task.load_data(parse_source("sample"), config)
    model = task.build_model(config, bundle)
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape[1:]) == (None, None, 1)
    names = {layer.name for layer in model.layers}
    assert {"resize", "rescale", "aug_rotation", "aug_zoom", "pool", "logits"} <= names
    assert "aug_flip" not in names  # digits are not mirrored by default
    x = np.random.default_rng(0).integers(0, 255, (2, 37, 23, 1), dtype=np.uint8)
    a, b = model(x, training=False), model(x, training=False)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b))  # inference is deterministic: no augmentation
    assert np.asarray(a).shape == (2, 10)
    keras.utils.set_random_seed(0)
    c = model.get_layer("aug_rotation")(np.ones((1, 16, 16, 1), np.float32) * np.arange(16)[None, :, None, None],
                                         training=True)
    assert not np.allclose(np.asarray(c), np.arange(16)[None, :, None, None])


def test_config_validation_and_switches(task):
    with pytest.raises(ConfigError):
        task.make_config({"model": "resnet9000"})
    with pytest.raises(ConfigError):
        task.make_config({"channels": 2})
    with pytest.raises(ConfigError):
        task.make_config({"image_size": 4})
    config = task.make_config({"flip": "horizontal", "rotation": 0.0, "augment": True})
    bundle = task.load_data(parse_source("sample"), config)
    aug = bundle.meta["augmentation"]
    assert aug["flip"] == "horizontal" and aug["rotation"] == 0.0 and aug["zoom"] > 0
    off = task.build_model(task.make_config({"augment": False, "model": "cnn_small"}), bundle)
    assert not [layer for layer in off.layers if layer.name.startswith("aug_")]


def test_examples_are_real_digits_with_labels(task):
    bundle = task.load_data(parse_source("sample"), task.make_config())
    examples = task.examples(bundle.meta)
    assert len(examples) >= 3 and len({e.expected for e in examples}) == len(examples)
    for e in examples:
        img = Image.open(io.BytesIO(e.value))
        assert img.format == "PNG" and img.size == (28, 28)
        assert np.asarray(img).std() > 20  # ink on a background, not a blank image


def test_decode_input_accepts_arrays_and_bytes_but_never_reads_a_typed_path(task, tmp_path):
    from suite.errors import InputError

    x = task.decode_input(np.random.default_rng(0).random((5, 7, 3)), {"channels": 1})
    assert x.shape == (5, 7, 1) and x.dtype == np.uint8
    with pytest.raises(InputError):
        task.decode_input(np.zeros((2, 3, 4, 5)), {"channels": 1})
    path = tmp_path / "digit.png"
    path.write_bytes(_png(np.full((9, 9), 200, np.uint8)))
    y = task.decode_input(path.read_bytes(), {"channels": 3})
    assert y.shape == (9, 9, 3) and int(y.mean()) == 200
    with pytest.raises(InputError, match="not as text"):
        task.decode_input(str(path), {"channels": 3})
    with pytest.raises(InputError):
        task.decode_input("x" * 300, {"channels": 3})


def test_serving_signature_takes_encoded_image_bytes(task):
    config = task.make_config({"model": "cnn_small", "image_size": 16})
    bundle = task.load_data(parse_source("sample"), config)
    model = task.build_model(config, bundle)
    signatures = task.serving_signatures(model, bundle.meta)
    assert {"serving_default", "image_bytes"} <= set(signatures)
    example = task.examples(bundle.meta)[0]
    out = signatures["image_bytes"](example.value)
    expected = np.asarray(model(task.decode_input(example.value, bundle.meta)[None], training=False))
    np.testing.assert_allclose(np.asarray(out["probabilities"]), expected, rtol=1e-5, atol=1e-6)
    assert out["label"].numpy()[0].decode() in bundle.meta["class_names"]


def _digit_like(light_on_dark: bool, size=(40, 30)) -> np.ndarray:
    """A bar of ink in the middle of a plain background: light on dark (MNIST) or dark on light (ink on paper)."""
    img = np.zeros(size, np.uint8)
    img[8:-8, size[1] // 2 - 2 : size[1] // 2 + 2] = 255
    return img if light_on_dark else 255 - img


def test_glyph_models_invert_ink_on_paper_to_their_own_background_and_say_so(task):
    from suite_plugins.image_classification.layers import MatchBackground
    from suite_plugins.image_classification.task import background

    bundle = task.load_data(parse_source("sample"), task.make_config())
    assert bundle.meta["background"] == "dark"  # the sample's digits are light on black, as MNIST's
    paper, screen = _digit_like(False), _digit_like(True)
    assert background(paper) == "light" and background(screen) == "dark"
    layer = MatchBackground(dark=True)
    both = np.stack([paper, screen])[..., None].astype(np.float32) / 255.0
    out = np.asarray(layer(both))
    np.testing.assert_allclose(out[0], 1.0 - both[0])  # ink on paper becomes light on dark
    np.testing.assert_allclose(out[1], both[1])  # already as trained: unchanged
    assert MatchBackground.from_config(layer.get_config()).dark is True
    notes = task.input_notes(_png(paper), bundle.meta)
    assert any("dark on light: the model inverts it" in n for n in notes), notes
    assert not any("inverts" in n for n in task.input_notes(_png(screen), bundle.meta))
    model = task.build_model(task.make_config({"model": "cnn_small", "image_size": 16}), bundle)
    assert "match_background" in {layer.name for layer in model.layers}


def test_photo_models_have_no_background_matching(task, tmp_path):
    _write_tree(tmp_path, [(40, 50)], colour=True)
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    assert "background" not in bundle.meta
    model = task.build_model(task.make_config({"model": "cnn_small"}), bundle)
    assert "match_background" not in {layer.name for layer in model.layers}


def test_the_drawing_pad_looks_like_the_training_images(task):
    digits = task.drawing({"channels": 1, "image_size": 28, "class_names": list("0123456789")})
    assert (digits.background, digits.pen) == ("#000000", "#ffffff")  # light strokes on black, as MNIST
    assert digits.pen_width * 28 / digits.side >= 1.5  # a stroke still 2 px wide once shrunk to 28 px
    photos = task.drawing({"channels": 3, "image_size": 96, "class_names": ["a", "b"]})
    assert photos.background == "#ffffff"
    assert task.drawing({}) is None


def test_no_background_matching_where_backgrounds_vary_between_images(task, tmp_path):
    from suite_plugins.image_classification.task import background

    _write_tree(tmp_path, [(20, 20)], colour=False)  # grey: bright squares against dark ones
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    assert bundle.meta["background"] == "mixed"  # inverting would erase the classes' difference
    model = task.build_model(task.make_config({"model": "cnn_small"}), bundle)
    assert "match_background" not in {layer.name for layer in model.layers}
    assert task.input_notes(_png(_digit_like(False)), bundle.meta) == []
    assert background(np.stack([_digit_like(True)] * 99 + [_digit_like(False)])[..., None]) == "dark"  # 1% odd: still dark


def test_warmup_gives_the_first_example_and_one_of_another_size(task):
    bundle = task.load_data(parse_source("sample"), task.make_config())
    first, other = task.warmup_inputs(bundle.meta)
    assert first == task.examples(bundle.meta)[0].value
    a, b = (task.decode_input(raw, bundle.meta) for raw in (first, other))
    assert a.shape[2] == b.shape[2] and a.shape[:2] != b.shape[:2]  # two sizes: traced once for any size
