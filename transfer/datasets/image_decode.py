"""Decode one image file into the square uint8 RGB array the network's data is stored as.

The one decoding of the project: the prepare stage calls it for every image of a folder dataset,
and predict for every image it labels, so a photo reaches a model exactly as its training images
did. An image of any size and mode is turned upright (EXIF orientation), made RGB, and its
centred square is resized to size x size; the crop comes first (one resize of the square, never
of the whole image), and JPEGs are decoded at the smallest power-of-two reduction still at
least size px on the shorter side (PIL's draft mode, which skips most of the decoding work).

A file is opened without following it into a FIFO or device, its pixel count is checked from the
header before a pixel is decoded, and any decoder failure becomes a UserError naming the file.
"""

import math
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from transfer.errors import UserError

# Decoded, an RGBA image takes 4 bytes a pixel: 50 megapixels (a large phone photo) bound it at 200 MB. PIL's own
# bomb check starts at 89 megapixels and only warns below 179.
MAX_PIXELS = 50_000_000
REASON_CHARACTERS = 120  # of a decoder's message quoted in the error: a crafted file may make it long
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit PNGs open as one of these; 8-bit is >> 8


def printable(text: str) -> str:
    """text with control characters escaped (\\x1b...), so a file or class name cannot drive the terminal."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def decode_square(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the file's centred square, upright, RGB; a UserError naming the file if unreadable."""
    try:
        # O_NONBLOCK: opening a FIFO named like an image returns at once (and fails the regular-file check)
        # instead of waiting forever for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"{printable(str(path))}: cannot open ({error.strerror})") from None
    with open(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise UserError(f"{printable(str(path))}: not a regular file")
        try:
            with Image.open(file) as image:  # reads the header only: the size is known before any pixel is decoded
                width, height = image.size
                square = _square(image, size) if width * height <= MAX_PIXELS else None
        except Exception as error:  # decoders raise many types on crafted files (SyntaxError, struct.error, ...)
            # The decoder's own words say what is wrong (e.g. "image file is truncated"); bounded, one line.
            detail = str(error).splitlines()[0][:REASON_CHARACTERS] if str(error) else ""
            reason = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
            raise UserError(f"{printable(str(path))}: not a readable image ({printable(reason)})") from None
    if square is None:
        raise UserError(
            f"{printable(str(path))}: {width}x{height} pixels, more than the {MAX_PIXELS} this project decodes; "
            "downscale it first"
        )
    return square


def _square(image: Image.Image, size: int) -> np.ndarray:
    """The decoded image's centred square at size x size, as an RGB array."""
    width, height = image.size
    shorter = min(width, height)
    # Draft mode (JPEG only; a no-op for other formats) picks a reduction that keeps both sides >= the request.
    image.draft("RGB", (math.ceil(width * size / shorter), math.ceil(height * size / shorter)))
    image = _as_rgb(ImageOps.exif_transpose(image))
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    resized = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.asarray(resized, dtype=np.uint8).copy()  # PIL's buffer is read-only; a copy owns its pixels


def _as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: palettes through RGBA (their transparency then drops), 16-bit gray scaled down."""
    if image.mode == "RGB":
        image.load()  # decode now, inside the caller's error handling
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.uint32) >> 8  # 0..65535 -> 0..255 (convert() would clip at 255)
        return Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")
