"""Obtain the backbone weights model.weights names: torchvision's ImageNet release, a local file, or seeded random."""

import shutil
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights, resnet18

from transfer.atomic import atomic_path, save_torch
from transfer.backbone import load_backbone_state
from transfer.config import IMAGENET_WEIGHTS, RANDOM_WEIGHTS, ModelConfig
from transfer.digest import Checksum
from transfer.errors import UserError
from transfer.fetch import fetch

IMAGENET_URL = ResNet18_Weights.IMAGENET1K_V1.url  # torchvision's IMAGENET1K_V1 release
# The file name carries only 8 hex digits (32 bits) of its SHA-256; the full digest and size are pinned here.
# Both were found identical in many independent public repositories (searched with the find_string tool),
# which check the same download.pytorch.org file before use.
IMAGENET_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
IMAGENET_BYTES = 46_830_571
OFFLINE_HINT = (
    f"to work offline set model.weights to a local copy of {IMAGENET_URL.rsplit('/', 1)[-1]}, "
    "or to 'random' (a seeded stand-in, no ImageNet knowledge)"
)


def write_random_weights(destination: Path, seed: int) -> None:
    """A seeded, freshly initialised ResNet18 state_dict: the stand-in for ImageNet weights offline."""
    torch.manual_seed(seed)
    save_torch(resnet18(weights=None).state_dict(), destination)


def obtain_weights(model: ModelConfig, destination: Path) -> None:
    """Write the weights model.weights names to destination, checked to be a ResNet18 state_dict."""
    if model.weights == RANDOM_WEIGHTS:
        write_random_weights(destination, model.random_weights_seed)
        return
    if model.weights == IMAGENET_WEIGHTS:
        checksum = Checksum("sha256", IMAGENET_SHA256)
        fetch(IMAGENET_URL, destination, checksum=checksum, max_bytes=IMAGENET_BYTES, offline_hint=OFFLINE_HINT)
    else:
        source = Path(model.weights).expanduser()
        if not source.is_file():
            raise UserError(f"model.weights = '{model.weights}' is not a file, 'imagenet' or 'random'")
        load_backbone_state(source)  # fail on a wrong file before copying it
        with atomic_path(destination) as temp_path:
            shutil.copyfile(source, temp_path)
    try:
        load_backbone_state(destination)
    except UserError:
        destination.unlink()
        raise
