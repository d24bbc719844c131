"""Label image files with a trained model file: find the images, decode them at its stored size, rank the classes.

Images of any size and mode are decoded exactly as the prepare stage decodes a folder dataset
(transfer/datasets/image_decode.py: upright, RGB, the centred square at the stored size the model's training
images had, 32 px for CIFAR), then resized and normalised by augment.normalize with the settings
stored in the model file, exactly as training did.
"""

from pathlib import Path

import torch

from transfer.datasets.image_decode import allocate_images, decode_square
from transfer.errors import UserError
from transfer.models.network import build_inference_network
from transfer.printable import printable
from transfer.training.augment import Normalization

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_files(arguments: list[Path]) -> tuple[list[Path], list[str]]:
    """Image files named or found (recursively, sorted) in folders, and one problem line per missing path.

    A folder found inside one is walked, never labelled, whatever its suffix (a folder named x.png is no image);
    a FIFO or device found there is kept, for decode_square to refuse in one line.
    """
    files, problems = [], []
    for argument in arguments:
        if argument.is_dir():
            files += sorted(
                path for path in argument.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and not path.is_dir()
            )
        elif argument.exists():
            files.append(argument)
        else:
            problems.append(f"{printable(str(argument))}: no such file or folder")
    return files, problems


def load_image(path: Path, stored_size: int) -> torch.Tensor:
    """uint8 (3, S, S) at the stored size S, decoded as prepare decodes; a UserError if unreadable."""
    return torch.from_numpy(decode_square(path, stored_size)).permute(2, 0, 1)


def top_classes(checkpoint: dict, images: torch.Tensor, top: int, device: torch.device, batch_size: int) -> list:
    """Per image: the `top` (class name, probability) pairs, most probable first."""
    net = build_inference_network(checkpoint).to(device)
    names = checkpoint["class_names"]
    normalization = Normalization.from_record(checkpoint["normalization"])
    results = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            inputs = normalization(images[start : start + batch_size].contiguous())  # NHWC-backed: as stacked
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


def read_images(files: list[Path], stored_size: int) -> tuple[list[Path], torch.Tensor, list[str]]:
    """(readable files, their uint8 (N, 3, S, S) images, one problem line per unreadable file).

    Decoded into one array allocated up front: a set too large for memory is one line saying how large.
    """
    images = allocate_images(len(files), stored_size, "predict", "label fewer images at a time")
    good, problems = [], []
    for path in files:
        try:
            images[len(good)] = decode_square(path, stored_size)
            good.append(path)
        except UserError as error:
            problems.append(str(error))
    return good, torch.from_numpy(images[: len(good)]).permute(0, 3, 1, 2), problems
