"""Label image files with a trained model: `python -m stages.predict MODEL IMAGE_OR_FOLDER... [--json] [--top K]`.

A tool, not a DVC stage. Images of any size and mode are decoded as the prepare stage decodes a folder
dataset: upright, RGB, the centred square at the stored size the model trained on (32 px for CIFAR),
then resized and normalised exactly as training did (transfer/models/inference.py, with the settings stored in
the model file).
"""

import argparse
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from transfer.compute.device import out_of_memory_as_user_error, resolve_device
from transfer.errors import UserError, run_stage
from transfer.models.inference import format_table, image_files, read_images, top_classes
from transfer.models.model_file import load_model_file


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


@contextlib.contextmanager
def cpu_out_of_memory_as_user_error() -> Iterator[None]:
    """PyTorch's CPU allocator failing (a RuntimeError, not torch.OutOfMemoryError) becomes one line with its size."""
    try:
        yield
    except MemoryError:
        raise UserError("predict: out of memory in the forward pass; lower --batch-size") from None
    except RuntimeError as error:
        attempt = re.search(r"you tried to allocate (\d+) bytes", str(error))
        if attempt is None:
            raise
        gib = int(attempt.group(1)) / 2**30
        raise UserError(
            f"predict: out of memory allocating {gib:.2f} GiB in the forward pass; lower --batch-size"
        ) from None


def main(argv: list[str] | None = None) -> None:
    """Label the images; bad ones are listed on stderr and make the exit status 2 at the end."""
    arguments = parse_arguments(argv)
    checkpoint = load_model_file(arguments.model)
    device = resolve_device(arguments.device)
    files, problems = image_files(arguments.images)
    good, images, unreadable = read_images(files, checkpoint["normalization"]["stored_size"])
    problems += unreadable
    with out_of_memory_as_user_error("predict", advice="lower --batch-size"), cpu_out_of_memory_as_user_error():
        ranked = top_classes(checkpoint, images, arguments.top, device, arguments.batch_size) if good else []
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
