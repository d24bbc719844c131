"""Label image files with a trained model: `python -m stages.predict MODEL IMAGE_OR_FOLDER... [--json] [--top K]`.

A tool, not a DVC stage. Images of any size and mode become RGB, are resized (shorter side) and
center-cropped to the 32x32 CIFAR resolution the model trained on, then resized and normalised
exactly as training did (stages/data.normalize with the statistics stored in the model file).
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from stages.device import resolve_device
from stages.errors import UserError, run_stage
from stages.model import build_inference_network

CIFAR_SIZE = 32  # pixels: the resolution of every training image before data.image_size resizing
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODEL_KEYS = ("state_dict", "class_names", "normalization", "config")


def load_model_file(path: Path) -> dict:
    """A models/<strategy>.pt checkpoint, or a UserError naming the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except Exception as error:  # pickle, zip and torch errors alike: not a file we wrote
        raise UserError(f"{path}: not a model file of this project ({type(error).__name__})") from None
    missing = [key for key in MODEL_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"{path}: not a model file of this project (missing {', '.join(missing)})")
    return checkpoint


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


def normalize_images(images: torch.Tensor, normalization: dict) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> float (B, 3, S, S): resized as in training, then the stored mean/std."""
    pixels = images.float() / 255.0
    size = normalization["image_size"]
    if size != pixels.shape[-1]:  # the same interpolation as stages/data.normalize (linear, so order is free)
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1)
    return (pixels - mean) / std


def top_classes(checkpoint: dict, images: torch.Tensor, top: int, device: torch.device, batch_size: int) -> list:
    """Per image: the `top` (class name, probability) pairs, most probable first."""
    net = build_inference_network(checkpoint).to(device)
    names = checkpoint["class_names"]
    results = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            inputs = normalize_images(images[start : start + batch_size], checkpoint["normalization"])
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


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="models/<strategy>.pt")
    parser.add_argument("images", type=Path, nargs="+", help="image files or folders (walked recursively)")
    parser.add_argument("--json", action="store_true", help='one JSON list of {"file", "top5": [...]}')
    parser.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    arguments = parser.parse_args(argv)
    if arguments.top < 1 or arguments.batch_size < 1:
        parser.error("--top and --batch-size must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> None:
    """Label the images; bad ones are listed on stderr and make the exit status 2 at the end."""
    arguments = parse_arguments(argv)
    checkpoint = load_model_file(arguments.model)
    device = resolve_device(arguments.device)
    files, problems = image_files(arguments.images)
    good, images = [], []
    for path in files:
        try:
            images.append(load_image(path))
            good.append(path)
        except UserError as error:
            problems.append(str(error))
    ranked = top_classes(checkpoint, torch.stack(images), arguments.top, device, arguments.batch_size) if images else []
    labels = list(zip(good, ranked, strict=True))
    if arguments.json:
        # The key stays "top5" whatever --top is: the documented format, so parsers need no flag-dependent key.
        records = [{"file": str(p), "top5": [{"class": c, "probability": v} for c, v in r]} for p, r in labels]
        print(json.dumps(records, indent=2))
    elif labels:
        print(format_table(labels))
    if problems:
        raise UserError(
            "; ".join(problems) if len(problems) == 1 else f"{len(problems)} bad inputs:\n" + "\n".join(problems)
        )


if __name__ == "__main__":
    run_stage(main)
