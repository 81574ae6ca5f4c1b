"""Safe image decoding shared by prediction and the folder loader.

Every path from user bytes to pixels goes through :func:`decode_image`: the size an image declares in its
header is checked (with PIL's lazy ``Image.open``) before any pixel is decoded, so a small file that claims
30000x30000 pixels is refused without allocating gigabytes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from suite.errors import InputError

# A 12 MP phone photo is well inside; a decompression bomb is not.
MAX_PIXELS = 40_000_000
# Larger images are shrunk while decoding: the model resizes to at most a few hundred pixels anyway.
MAX_SIDE = 1024
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _pil():
    from PIL import Image

    # PIL raises DecompressionBombError from the header at twice this and warns above it; between the two,
    # open_image refuses the image itself, so the warning is noise (silenced once, not per call: it is cheaper).
    if Image.MAX_IMAGE_PIXELS != MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))


def _sniff(raw: bytes) -> list[str] | None:
    """The one PIL plugin to try for a PNG or JPEG signature (PIL otherwise probes each plugin in turn)."""
    for magic, fmt in _MAGIC:
        if raw.startswith(magic):
            return [fmt]
    return None


def open_image(raw: bytes):
    """A lazily opened PIL image whose declared size has been checked; nothing is decoded yet."""
    Image = _pil()
    from PIL import UnidentifiedImageError

    if not raw:
        raise InputError("the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(raw), formats=_sniff(raw))
    except Image.DecompressionBombError:
        raise InputError(f"the image declares more than {MAX_PIXELS // 1_000_000} megapixels; refused") from None
    except UnidentifiedImageError:
        raise InputError("not a readable image (expected PNG, JPEG, GIF, BMP or WebP)") from None
    except Exception as err:  # malformed headers raise assorted errors inside PIL plugins
        raise InputError(f"not a readable image: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise InputError(f"the image declares an empty size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise InputError(f"the image declares {width}x{height} pixels, more than {MAX_PIXELS // 1_000_000} "
                         "megapixels; refused")
    return img


def _to_array(img, channels: int) -> np.ndarray:
    """Pixels of a loaded PIL image as uint8 HxWxC (C = ``channels``), whatever its mode."""
    Image = _pil()
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit and 32-bit grey: scale to 8 bits instead of clipping (PIL's convert("L") clips).
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max(initial=0)), 1.0)
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        out = gray[..., None]
        return np.repeat(out, 3, axis=-1) if channels == 3 else out
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels are shown over white, as browsers and viewers do.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)  # CMYK, YCbCr, P, 1 and LAB convert here
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def decode_image(raw: bytes, channels: int, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Bytes of an image file -> uint8 HxWxC, or one-line InputError.

    Animated images give their first frame; EXIF rotation is applied; images larger than ``max_side``
    are shrunk (keeping the aspect ratio) because the model resizes them anyway.
    """
    if channels not in (1, 3):
        raise InputError(f"the model expects 1 or 3 channels, not {channels}")
    img = open_image(raw)
    try:
        img.seek(0)  # animated GIF / WebP / APNG: the first frame
        if max(img.size) > max_side and img.format == "JPEG":
            img.draft("RGB" if channels == 3 else "L", (max_side, max_side))  # decode JPEG at reduced scale
        img.load()
    except InputError:
        raise
    except Exception as err:  # truncated or corrupt data: OSError, SyntaxError, ValueError, zlib errors
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"the image data is truncated or corrupt ({msg})") from None
    if "exif" in img.info:  # only files that carry EXIF can be rotated by it
        try:
            from PIL import ImageOps

            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block is not worth refusing the image for
            pass
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side))
    return _to_array(img, channels)


def resize_array(arr: np.ndarray, size: tuple[int, int], *, crop: bool = False) -> np.ndarray:
    """Resize a uint8 HxWxC array to ``size`` = (height, width) with PIL (bilinear, antialiased); with ``crop``,
    centre-crop to the target's aspect ratio first (as ``keras.layers.Resizing(crop_to_aspect_ratio=True)``)."""
    Image = _pil()
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    if crop:
        ah, aw = arr.shape[:2]
        ch, cw = min(ah, round(aw * h / w)), min(aw, round(ah * w / h))
        top, left = (ah - ch) // 2, (aw - cw) // 2
        arr = arr[top:top + ch, left:left + cw]
    if arr.shape[-1] == 1:
        out = np.asarray(Image.fromarray(arr[..., 0]).resize((w, h), Image.BILINEAR))[..., None]
    else:
        out = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
    return out.astype(np.uint8)


def encode_png(arr: np.ndarray) -> bytes:
    """A uint8 HxW, HxWx1 or HxWx3 array as PNG bytes (for previews and examples)."""
    Image = _pil()
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
