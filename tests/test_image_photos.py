"""Photos of varying size and shape: the resize policy chosen from the data, the random resized crop and colour
jitter (training only), and a model trained on such a folder that reloads and exports with raw inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from suite_plugins.image_classification.images import resize_array
from suite_plugins.image_classification.plan import augmentation, photo_sizes, resize_policy


def test_resize_policy_crops_near_square_shapes_and_squashes_wide_ones():
    assert resize_policy({(300, 400), (400, 300), (333, 333), (480, 360)}) == "crop"
    assert resize_policy({(300, 400), (281, 500), (500, 281), (300, 450)}) == "squash"
    assert resize_policy({(32, 32)}) == "squash"  # one size: nothing to crop


def test_resize_policy_weighs_each_image_not_each_distinct_size():
    # 95 photos share two near-square sizes, five odd panoramas each have their own: 95% near square.
    from collections import Counter

    sizes = Counter({(300, 400): 50, (400, 300): 45, (200, 800): 1, (210, 800): 1, (220, 800): 1,
                     (800, 200): 1, (800, 230): 1})
    assert resize_policy(sizes) == "crop"
    assert resize_policy(Counter({(32, 32): 500})) == "squash"  # many images of one size: nothing to crop


def test_input_sides_are_never_larger_than_the_photos():
    assert photo_sizes(0) == photo_sizes(2000) == (64, 96, 128)
    assert photo_sizes(100) == (64, 96)
    assert photo_sizes(40) == (64,)  # the smallest side still; the model upsamples such photos


def test_centre_crop_resize_keeps_the_middle():
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, 50:150] = 255  # the middle square is white, the sides black
    assert resize_array(arr, (20, 20), crop=True).min() == 255
    assert resize_array(arr, (20, 20)).min() == 0  # squashed: the black sides stay in


def test_photos_augment_with_resized_crops_and_colour_digits_do_not():
    photos = augmentation(96, uniform=False, channels=3)
    assert photos["crop_scale"] > 0 and photos["color"] > 0 and photos["zoom"] == 0
    assert augmentation(96, uniform=False, channels=1)["color"] == 0
    cifar = augmentation(32, uniform=True)
    assert cifar["crop_scale"] == 0 and cifar["translation"] > 0


def test_random_resized_crop_samples_real_pixels_mirrors_and_resizes_like_keras_at_inference():
    import keras

    from suite_plugins.image_classification.layers import RandomResizedCrop

    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None], (30, 1, 3))[None].repeat(64, 0)
    layer = RandomResizedCrop(16, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True, seed=1)
    out = np.asarray(layer(ramp, training=True))
    assert out.shape == (64, 16, 16, 3)
    rising = out[:, 8, -1, 0] > out[:, 8, 0, 0]
    assert 0 < rising.sum() < 64  # some mirrored, some not
    crop = RandomResizedCrop(16, 16, scale=(0.25, 0.5), seed=2)
    small = np.asarray(crop(ramp, training=True))
    assert (small.max(axis=(1, 2, 3)) - small.min(axis=(1, 2, 3)) < 0.95).all()  # a part, not the whole ramp
    for policy in (False, True):
        rrc = RandomResizedCrop(16, 16, crop_to_aspect_ratio=policy)
        plain = keras.layers.Resizing(16, 16, crop_to_aspect_ratio=policy)
        np.testing.assert_allclose(np.asarray(rrc(ramp[:2], training=False)), np.asarray(plain(ramp[:2])), atol=1e-6)
    again = RandomResizedCrop.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_colour_jitter_changes_colours_in_training_only():
    from suite_plugins.image_classification.layers import ColorJitter

    x = np.random.default_rng(0).uniform(0.2, 0.8, (8, 12, 12, 3)).astype(np.float32)
    layer = ColorJitter(0.3, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    assert y.min() >= 0 and y.max() <= 1 and np.abs(y - x).mean() > 0.01


def _photo_folder(root, n_per_class: int = 24):
    """Three classes told apart by colour, in sizes from 40 to 90 px and shapes from 3:4 to 4:3."""
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 200)}
    for split, n in (("train", n_per_class), ("test", n_per_class // 3)):
        for name, rgb in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h = int(rng.integers(45, 70))
                w = int(h * rng.choice([0.75, 1.0, 4 / 3]))
                arr = np.clip(np.array(rgb) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.jpg", quality=90)
    return root


@pytest.mark.slow
def test_a_folder_of_varying_photos_trains_reloads_and_exports(tmp_path):
    from suite.export import export_run
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    data = _photo_folder(tmp_path / "photos")
    task = get("image_classification")
    run = train(task, str(data), {"epochs": 2, "width": 16, "image_size": 64, "batch_size": 16,
                                  "learning_rate": 0.05, "time_budget_minutes": 1},
                name="photos", store=RunStore(tmp_path / "runs"), options=TrainOptions(tensorboard=False))
    assert run.status == "completed", run.info.get("error")
    assert run.meta["resize_policy"] == "crop"  # every shape is within 4:3
    assert run.meta["augmentation"]["crop_scale"] > 0
    model = run.load_model()
    assert type(model.get_layer("resize")).__name__ == "RandomResizedCrop"
    reports = export_run(run, formats="keras,tflite,onnx", examples=12)
    for fmt, rep in reports.items():  # keras: reloaded with safe_mode in a fresh process
        assert rep["supported"], (fmt, rep.get("reason"))
        assert rep["verification"]["top1_agreement"] >= 0.9, (fmt, rep["verification"])
