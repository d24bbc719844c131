"""Write a folder dataset of generated images: the stand-in that tests and the benchmark read offline.

The files are what a user's folder holds: JPEG, PNG, WebP and BMP of several sizes and aspect
ratios, in modes RGB, L (gray), RGBA, P (palette), 16-bit gray and CMYK, some JPEGs with an EXIF
rotation. Each class has its own colour and stripe direction plus seeded noise, so a network can
learn it and a test can check which class an image was stored as.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# (format suffix, mode, width, height): cycled through, so every class gets every kind
IMAGE_KINDS = (
    (".jpg", "RGB", 80, 60),
    (".png", "L", 48, 64),
    (".webp", "RGB", 64, 64),
    (".bmp", "RGB", 50, 40),
    (".png", "RGBA", 70, 50),
    (".png", "P", 40, 56),
    (".png", "I;16", 60, 45),
    (".jpg", "CMYK", 72, 54),
    (".jpg", "RGB-rotated", 60, 80),  # EXIF orientation 6: stored sideways, shown upright
)
EXIF_ORIENTATION_TAG = 0x0112
ROTATED_90_CLOCKWISE = 6  # EXIF: the stored pixels must be turned 90 degrees clockwise to be upright


@dataclass(frozen=True)
class SyntheticFolder:
    """How many images of which classes to write, and where."""

    classes: tuple[str, ...] = ("cat", "dog", "fox")
    train_per_class: int = 18
    test_per_class: int = 0  # 0: no test/ folder (prepare then holds out data.test_size images)
    seed: int = 0


def class_colour(index: int) -> np.ndarray:
    """The RGB colour a class's images are painted in: far apart for the first classes."""
    hue = (index * 0.38) % 1.0
    return (np.array(Image.new("HSV", (1, 1), (int(hue * 255), 200, 220)).convert("RGB")).reshape(3)).astype(np.int16)


def class_pixels(index: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8: the class colour, stripes in the class's direction, and noise."""
    rows, cols = np.mgrid[0:height, 0:width]
    stripes = ((rows if index % 2 else cols) // 4 % 2).astype(np.int16) * 40
    noise = rng.integers(-20, 21, size=(height, width, 3), dtype=np.int16)
    return np.clip(class_colour(index) + stripes[..., None] + noise, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray, mode: str) -> None:
    """Save pixels (H, W, 3) uint8 at path in the given mode (the suffix picks the format)."""
    image = Image.fromarray(pixels, "RGB")
    exif = None
    if mode == "RGB-rotated":
        image = image.transpose(Image.Transpose.ROTATE_90)  # stored turned left; EXIF says turn it back
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = ROTATED_90_CLOCKWISE
    elif mode == "I;16":
        gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        image = Image.fromarray(gray)  # uint16 opens as I;16
    elif mode == "P":
        image = image.quantize(16)
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **({"exif": exif} if exif is not None else {}))


def write_synthetic_folder(root: Path, spec: SyntheticFolder = SyntheticFolder()) -> Path:
    """Write root/train/<class>/* (and root/test/<class>/* when spec.test_per_class) and return root."""
    rng = np.random.default_rng(spec.seed)
    splits = (("train", spec.train_per_class), ("test", spec.test_per_class))
    for split, per_class in splits:
        for index, name in enumerate(spec.classes):
            for number in range(per_class):
                suffix, mode, width, height = IMAGE_KINDS[(number + index) % len(IMAGE_KINDS)]
                pixels = class_pixels(index, width, height, rng)
                write_image(root / split / name / f"{name}_{number:04d}{suffix}", pixels, mode)
    return root
