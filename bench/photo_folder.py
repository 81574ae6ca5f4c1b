"""A folder of varying-size "photos" built from CIFAR-10, for the photos benchmark (bench/photos.py).

No folder of real 200-500 px photos ships with the shared data, so this one is derived from CIFAR-10: each 32x32
image is upscaled (bicubic) to a random short side, placed at a random offset on a canvas of a random aspect
ratio (portrait and landscape, 1:1 to 16:9), the rest of the canvas filled by mirroring the picture outwards (so
the borders hold image-like content, not a flat colour), lightly blurred and noised as a camera would, and saved
as a JPEG of random quality. What it shares with a user's photos: sizes 200-500 px, mixed aspect ratios, the
object not always centred, JPEG artefacts, and a few thousand images. What it lacks: real detail at high
resolution (the content is 32x32 upscaled), so figures on it are a proxy, reported as such.

``python -m bench.photo_folder OUT [--per-class-train N --per-class-test N]`` writes ``OUT/{train,test}/<class>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9)  # long side / short side; each drawn as portrait or landscape


def photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 32x32x3 uint8 picture -> an HxWx3 uint8 "photo" with 200 <= H, W <= 500."""
    from PIL import Image, ImageFilter

    aspect = float(rng.choice(ASPECTS))
    long_side = int(rng.integers(max(200, int(np.ceil(200 * aspect))), 501))
    short_side = int(round(long_side / aspect))
    h, w = (short_side, long_side) if rng.random() < 0.5 else (long_side, short_side)
    side = int(round(min(h, w) * rng.uniform(0.7, 1.0)))  # the object fills 70-100% of the short side
    obj = np.asarray(Image.fromarray(img).resize((side, side), Image.BICUBIC))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    canvas = np.pad(obj, ((top, h - side - top), (left, w - side - left), (0, 0)), mode="symmetric")
    out = Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    arr = np.asarray(out).astype(np.float32) + rng.normal(0, 3.0, size=canvas.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def build(cifar_root: Path, out: Path, *, per_class_train: int = 300, per_class_test: int = 100,
          seed: int = 0) -> dict[str, int]:
    """Write ``out/{train,test}/<class>/*.jpg`` from the first images of each CIFAR-10 class folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        for class_dir in sorted(p for p in (cifar_root / split).iterdir() if p.is_dir()):
            dest = out / split / class_dir.name
            dest.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:per_class]:
                with Image.open(f) as im:
                    arr = photo(np.asarray(im.convert("RGB")), rng)
                Image.fromarray(arr).save(dest / f"{f.stem}.jpg", quality=int(rng.integers(80, 96)))
                counts[split] += 1
    return counts


def main(argv=None) -> int:
    from bench.common import shared_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class-train", type=int, default=300)
    parser.add_argument("--per-class-test", type=int, default=100)
    args = parser.parse_args(argv)
    root = shared_data("cifar10")
    if root is None:
        raise SystemExit("cifar10/ not found under SUITE_SHARED_DATA")
    print(build(root, args.out, per_class_train=args.per_class_train, per_class_test=args.per_class_test))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
