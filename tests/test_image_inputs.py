"""Bad and unusual image files: each becomes a valid uint8 input or one clear InputError line."""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from suite.errors import InputError
from suite_plugins.image_classification.images import MAX_PIXELS, decode_image


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def declared_png(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares ``width`` x ``height`` grey pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def test_zero_bytes():
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", 1)


def test_truncated_png():
    rng = np.random.default_rng(0)
    data = _png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        decode_image(data[: len(data) // 2], 3)
    assert "\n" not in str(err.value)


def test_non_image_bytes():
    with pytest.raises(InputError, match="not a readable image"):
        decode_image(b"this is a text file that was named photo.png\n" * 20, 3)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (12, 10), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    x = decode_image(buf.getvalue(), 3)
    assert x.shape == (10, 12, 3) and x.dtype == np.uint8
    assert x[..., 0].mean() > 200 and x[..., 2].mean() < 50  # red, the first frame


def test_16_bit_png_is_scaled_not_clipped():
    arr = np.zeros((8, 8), np.uint16)
    arr[:, 4:] = 65535
    arr[:, 2] = 32896  # 128 * 257
    x = decode_image(_png(arr), 1)
    assert x.shape == (8, 8, 1) and x.dtype == np.uint8
    assert x[0, 0, 0] == 0 and x[0, 7, 0] == 255 and x[0, 2, 0] == 128


def test_cmyk_jpeg_becomes_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)  # pure red in CMYK
    x = decode_image(buf.getvalue(), 3)
    assert x.shape == (8, 16, 3)
    r, g, b = x.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_rgba_transparent_pixels_show_over_white():
    arr = np.zeros((6, 6, 4), np.uint8)
    arr[:3] = (0, 0, 0, 255)  # opaque black top half, transparent bottom half
    x = decode_image(_png(arr, "RGBA"), 3)
    assert x.shape == (6, 6, 3)
    assert (x[:3] == 0).all() and (x[3:] == 255).all()


def test_grayscale_into_colour_model_and_colour_into_grey_model():
    grey = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (5, 1))
    x = decode_image(_png(grey), 3)
    assert x.shape == (5, 10, 3) and (x[..., 0] == grey).all() and (x[..., 2] == grey).all()
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 1] = 200
    y = decode_image(_png(colour), 1)
    assert y.shape == (4, 4, 1) and 100 < int(y[0, 0, 0]) < 140  # luma of pure green


def test_declared_huge_image_refused_from_header_with_low_memory():
    data = declared_png(30000, 30000)
    assert len(data) < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(InputError, match="megapixels") as err:
        decode_image(data, 1)
    assert time.perf_counter() - t < 1.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50, f"peak memory grew {grown_mb:.0f} MB"
    assert "\n" not in str(err.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets the plugin's filter
def test_just_over_the_pixel_cap_refused_too():
    side = int(MAX_PIXELS**0.5) + 10  # above the cap but below PIL's own 2x bomb error
    with pytest.raises(InputError, match="megapixels"):
        decode_image(declared_png(side, side), 1)


def test_large_image_is_shrunk_keeping_aspect():
    x = decode_image(_png(np.full((300, 3000), 7, np.uint8)), 1, max_side=600)
    assert x.shape == (60, 600, 1) and int(x.mean()) == 7


# ---- plain PNGs: decoded inside the model's graph by predict, pixel for pixel as decode_image -----------------
def test_a_colour_photo_for_a_grayscale_model_and_a_far_size_are_said():
    from suite.registry import get

    task = get("image_classification")
    meta = {"channels": 1, "native_size": [28, 28], "class_names": ["a", "b"]}
    pixels = np.zeros((480, 640, 3), np.uint8)
    pixels[..., 0] = 200  # a red picture: colour, not grey stored as RGB
    photo = _png(pixels)
    notes = task.input_notes(photo, meta)
    assert any("converted to grayscale" in n for n in notes), notes
    assert any("640x480 picture was resized to the training images' 28x28" in n for n in notes), notes
    assert task.input_notes(_png(np.zeros((30, 26), np.uint8)), meta) == []  # gray and near the size
    assert task.input_notes(photo, {**meta, "channels": 3, "native_size": [400, 600]}) == []


def test_a_grey_picture_stored_as_rgb_is_not_called_colour():
    """A drawing from the app's pad arrives as an RGBA PNG of grey pixels: converting it loses nothing."""
    from suite.registry import get

    task = get("image_classification")
    meta = {"channels": 1, "native_size": [28, 28], "class_names": ["a", "b"]}
    drawing = np.zeros((28, 28, 4), np.uint8)
    drawing[..., 3] = 255
    drawing[10:18, 12:16, :3] = 255
    assert task.input_notes(_png(drawing), meta) == []
    drawing[10:18, 12:16, 0] = 0  # now it has colour
    assert any("converted to grayscale" in n for n in task.input_notes(_png(drawing), meta))
