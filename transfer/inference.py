"""Label image files with a trained model file: find the images, bring them to CIFAR's 32x32, rank the classes.

Images of any size and mode become RGB, are center-cropped to a square and resized to the 32x32
CIFAR resolution the model trained on, then normalised by augment.normalize with the settings
stored in the model file, exactly as training did. Cropping first keeps the work at most the
decoded image: a 1x5,000,000 strip resized before cropping would ask for 15 GB.
"""

import os
import stat
from pathlib import Path

import torch
from PIL import Image

from transfer.augment import Normalization
from transfer.errors import UserError
from transfer.model import build_inference_network

CIFAR_SIZE = 32  # pixels: the resolution of every training image before data.image_size resizing
# Decoded, an RGBA image takes 4 bytes a pixel: 50 megapixels (a large phone photo) bound it at 200 MB. PIL's own
# bomb check starts at 89 megapixels and only warns below 179.
MAX_PIXELS = 50_000_000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def printable(text: str) -> str:
    """text with control characters escaped (\\x1b...), so a file or class name cannot drive the terminal."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def image_files(arguments: list[Path]) -> tuple[list[Path], list[str]]:
    """Image files named or found (recursively, sorted) in folders, and one problem line per missing path."""
    files, problems = [], []
    for argument in arguments:
        if argument.is_dir():
            files += sorted(path for path in argument.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
        elif argument.exists():
            files.append(argument)
        else:
            problems.append(f"{printable(str(argument))}: no such file or folder")
    return files, problems


def load_image(path: Path) -> torch.Tensor:
    """uint8 (3, 32, 32): RGB, center-cropped to a square, resized to 32; a UserError if unreadable."""
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
                rgb = _square_at_cifar_size(image) if width * height <= MAX_PIXELS else None
        except Exception as error:  # decoders raise many types on crafted files (SyntaxError, struct.error, ...)
            raise UserError(f"{printable(str(path))}: not a readable image ({type(error).__name__})") from None
    if rgb is None:
        raise UserError(
            f"{printable(str(path))}: {width}x{height} pixels, more than the {MAX_PIXELS} this tool decodes; "
            "downscale it first"
        )
    return (
        torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(CIFAR_SIZE, CIFAR_SIZE, 3).permute(2, 0, 1)
    )


def _square_at_cifar_size(image: Image.Image) -> Image.Image:
    """The centered square of the image, as 32x32 RGB; cropped before the resize, so it never grows the image."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side)).convert("RGB")
    return square.resize((CIFAR_SIZE, CIFAR_SIZE), Image.Resampling.BILINEAR)


def top_classes(checkpoint: dict, images: torch.Tensor, top: int, device: torch.device, batch_size: int) -> list:
    """Per image: the `top` (class name, probability) pairs, most probable first."""
    net = build_inference_network(checkpoint).to(device)
    names = checkpoint["class_names"]
    normalization = Normalization.from_record(checkpoint["normalization"])
    results = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            inputs = normalization(images[start : start + batch_size])
            probabilities = net(inputs.to(device)).float().softmax(dim=1).cpu()
            values, indices = probabilities.topk(min(top, len(names)), dim=1)
            results += [
                [(names[i], round(p, 6)) for p, i in zip(row_p.tolist(), row_i.tolist(), strict=True)]
                for row_p, row_i in zip(values, indices, strict=True)
            ]
    return results


def format_table(labels: list[tuple[Path, list]]) -> str:
    """Aligned columns: file, rank, class, probability."""
    rows = [("file", "rank", "class", "probability")]
    for path, ranked in labels:
        rows += [
            (printable(str(path)), str(rank), printable(name), f"{p:.4f}") for rank, (name, p) in enumerate(ranked, 1)
        ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def read_images(files: list[Path]) -> tuple[list[Path], list[torch.Tensor], list[str]]:
    """(readable files, their uint8 (3, 32, 32) images, one problem line per unreadable file)."""
    good, images, problems = [], [], []
    for path in files:
        try:
            images.append(load_image(path))
            good.append(path)
        except UserError as error:
            problems.append(str(error))
    return good, images, problems
