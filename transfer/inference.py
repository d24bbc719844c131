"""Label image files with a trained model file: find the images, bring them to CIFAR's 32x32, rank the classes.

Images of any size and mode become RGB, are resized (shorter side) and center-cropped to the 32x32
CIFAR resolution the model trained on, then normalised by augment.normalize with the settings
stored in the model file, exactly as training did.
"""

from pathlib import Path

import torch
from PIL import Image

from transfer.augment import Normalization
from transfer.errors import UserError
from transfer.model import build_inference_network

CIFAR_SIZE = 32  # pixels: the resolution of every training image before data.image_size resizing
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_files(arguments: list[Path]) -> tuple[list[Path], list[str]]:
    """Image files named or found (recursively, sorted) in folders, and one problem line per missing path."""
    files, problems = [], []
    for argument in arguments:
        if argument.is_dir():
            files += sorted(path for path in argument.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
        elif argument.exists():
            files.append(argument)
        else:
            problems.append(f"{argument}: no such file or folder")
    return files, problems


def load_image(path: Path) -> torch.Tensor:
    """uint8 (3, 32, 32): RGB, shorter side resized to 32, center-cropped; a UserError if unreadable."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"{path}: not a readable image ({type(error).__name__})") from None
    scale = CIFAR_SIZE / min(rgb.size)
    size = (max(CIFAR_SIZE, round(rgb.width * scale)), max(CIFAR_SIZE, round(rgb.height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - CIFAR_SIZE) // 2, (size[1] - CIFAR_SIZE) // 2
    rgb = rgb.crop((left, top, left + CIFAR_SIZE, top + CIFAR_SIZE))
    return (
        torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(CIFAR_SIZE, CIFAR_SIZE, 3).permute(2, 0, 1)
    )


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
        rows += [(str(path), str(rank), name, f"{p:.4f}") for rank, (name, p) in enumerate(ranked, 1)]
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
