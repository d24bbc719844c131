"""Decode one image file into the square uint8 RGB array the network's data is stored as.

The one decoding of the project: the prepare stage calls it for every image of a folder dataset,
and predict for every image it labels, so a photo reaches a model exactly as its training images
did. An image of any size and mode is turned upright (EXIF orientation), made RGB, and its
centred square is resized to size x size; the crop comes first (one resize of the square, never
of the whole image), and JPEGs are decoded at the smallest power-of-two reduction still at
least size px on the shorter side (PIL's draft mode, which skips most of the decoding work).

A file is opened without following it into a FIFO or device; only the formats of DECODED_FORMATS are
even probed (Pillow knows dozens, some of which start Ghostscript or decode before any size is known);
a JPEG's header markers and scans (what its parsing and decoding work grows with) are counted in its
bytes before Pillow reads it; the pixel count and mode are checked from the header before a pixel is
decoded, and the pixel count again on the image actually decoded. Any refusal or decoder failure
becomes a UserError naming the file.
docs/crafted-inputs.md lists what is refused and why.
"""

import math
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transfer.errors import UserError
from transfer.printable import printable

# 50 megapixels: a large phone photo. Decoding the worst such image (7000x7000, 16-bit gray or palette PNG) grows
# a process's peak memory by 423 MiB (docs/crafted-inputs.md: how it was measured); MAX_PIXELS_PEAK_MB bounds it in
# the tests. PIL's own bomb check starts at 89 megapixels and only warns below 179.
MAX_PIXELS = 50_000_000
MAX_PIXELS_PEAK_MB = 480
# Pillow's names of the formats the docs promise (prepare: .jpg .png .webp .bmp; predict also .gif .tif): nothing
# else is even probed. A phone's multi-picture JPEG (MPO) opens through JPEG.
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# Modes whose conversion to 8-bit RGB is right. "I" (32-bit integers) only from a PNG, where it holds 16-bit
# values; a 32-bit TIFF's would all clip to white, and float ("F") or Lab TIFFs would convert wrong.
DECODED_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit PNGs open as one of these; 8-bit is >> 8
# A progressive JPEG's decoding visits every block once per scan: libjpeg's standard progression has 10 scans
# (6 in gray), so 100 is generous; 10,000 scans in 1 MB took a minute. Counted as SOS markers (FF DA) in the
# bytes, an upper bound of the real count: entropy-coded data never holds FF DA.
MAX_JPEG_SCANS = 100
# Pillow parses a JPEG's header markers one by one in Python (about 1.4 us each): a header of a million empty
# markers took 1.4 s per 4 MB. Every marker starts with an FF byte, so FF bytes before the first scan bound the
# markers; a phone photo's header (EXIF, its thumbnail, ICC, XMP) holds a few hundred to a few thousand.
MAX_JPEG_HEADER_FF = 100_000
JPEG_START = b"\xff\xd8"  # SOI: the first two bytes of every JPEG (and multi-picture JPEG)
SOS_MARKER = b"\xff\xda"
READ_BLOCK = 1 << 20  # bytes read at a time when counting markers
REASON_CHARACTERS = 120  # of a decoder's message quoted in the error: a crafted file may make it long


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
            refusal = _jpeg_refusal(file) if file.read(len(JPEG_START)) == JPEG_START else None
            file.seek(0)
            if refusal is None:
                # Reads the header only: the size and mode are known before any pixel is decoded.
                with Image.open(file, formats=DECODED_FORMATS) as image:
                    refusal = _refusal(image)
                    square = _square(image, size) if refusal is None else None
        except _Refused as refused:
            refusal = str(refused)
        except UnidentifiedImageError:  # its words name the file object, not the file; ours say what is accepted
            raise UserError(
                f"{printable(path)}: not a readable image "
                f"(not one of the formats decoded: {', '.join(DECODED_FORMATS)})"
            ) from None
        except Exception as error:  # decoders raise many types on crafted files (SyntaxError, struct.error, ...)
            # The decoder's own words say what is wrong (e.g. "image file is truncated"); bounded, one line.
            detail = str(error).splitlines()[0][:REASON_CHARACTERS] if str(error) else ""
            reason = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
            raise UserError(f"{printable(str(path))}: not a readable image ({printable(reason)})") from None
    if refusal is not None:
        raise UserError(f"{printable(str(path))}: {refusal}")
    return square


class _Refused(Exception):
    """An image this project does not decode, found while decoding: the reason, without the file's name."""


def _refusal(image: Image.Image) -> str | None:
    """Why the opened (not yet decoded) image is refused, or None: its size or mode."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        return f"{width}x{height} pixels, more than the {MAX_PIXELS} this project decodes; downscale it first"
    if image.mode not in DECODED_MODES and not (image.mode in SIXTEEN_BIT_MODES and _sixteen_bit(image)):
        return (
            f"{image.format} image of mode {image.mode}, which this project does not decode "
            "(8-bit or 16-bit per channel only); convert it to 8-bit RGB first"
        )
    return None


def _sixteen_bit(image: Image.Image) -> bool:
    """True for a 16-bit image: I;16 of any byte order, or I from a PNG (whose samples are at most 16 bits)."""
    return image.mode != "I" or image.format == "PNG"


def _jpeg_refusal(file) -> str | None:
    """Why a JPEG is refused before Pillow parses it, or None: too many header markers or too many scans.

    Counted in the bytes, in C: FF bytes before the first SOS marker (an upper bound of the header's markers)
    and SOS markers (FF DA: an upper bound of the scans, since entropy-coded data never holds FF DA).
    """
    header_ff, scans, previous = 0, 0, b""
    file.seek(0)
    while block := file.read(READ_BLOCK):
        joined = previous + block  # a marker split between blocks is counted once
        if scans == 0:
            first = joined.find(SOS_MARKER)
            header_ff += joined.count(b"\xff", len(previous), len(joined) if first < 0 else first)
        scans += joined.count(SOS_MARKER)
        previous = block[-1:] if block[-1:] == SOS_MARKER[:1] else b""
    if header_ff > MAX_JPEG_HEADER_FF:
        return (
            f"a JPEG whose header holds {header_ff} FF bytes (markers), more than the {MAX_JPEG_HEADER_FF} "
            "this project parses; save it again without its metadata"
        )
    if scans > MAX_JPEG_SCANS:
        return (
            f"a JPEG of {scans} scans, more than the {MAX_JPEG_SCANS} this project decodes (each scan costs a "
            "pass over the image); save it again as a baseline or standard progressive JPEG"
        )
    return None


def _square(image: Image.Image, size: int) -> np.ndarray:
    """The decoded image's centred square at size x size, as an RGB array."""
    width, height = image.size
    shorter = min(width, height)
    # Draft mode (JPEG only; a no-op for other formats) picks a reduction that keeps both sides >= the request.
    image.draft("RGB", (math.ceil(width * size / shorter), math.ceil(height * size / shorter)))
    image.load()
    if image.width * image.height > MAX_PIXELS:  # what was decoded, whatever the header said
        raise _Refused(
            f"decoded to {image.width}x{image.height} pixels (its header said {width}x{height}), "
            f"more than the {MAX_PIXELS} this project decodes"
        )
    ImageOps.exif_transpose(image, in_place=True)  # in place: a copy of the decoded image would double its memory
    image = _as_rgb(image)
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
        # 0..65535 -> 0..255 (convert() would clip at 255); in place, so the 16-bit pixels are copied once.
        gray = np.asarray(image).copy()  # uint16 (I;16) or int32 (I, from a PNG: 0..65535)
        gray >>= 8
        del image  # the decoded 16-bit image: freed before the 8-bit and RGB copies are made
        return Image.fromarray(gray.astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def allocate_images(count: int, size: int, stage: str, advice: str) -> np.ndarray:
    """An uninitialised (count, size, size, 3) uint8 array; a UserError saying how large if memory is short."""
    try:
        return np.empty((count, size, size, 3), dtype=np.uint8)
    except MemoryError:  # numpy's _ArrayMemoryError included
        gib = count * size * size * 3 / 2**30
        raise UserError(
            f"{stage}: not enough memory for {count} images at {size}x{size} px ({gib:.2f} GiB as uint8 RGB); {advice}"
        ) from None
