"""Obtain the backbone weights model.weights names: torchvision's ImageNet release, a local file, or seeded random."""

import re
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
OFFLINE_HINT = (
    f"to work offline set model.weights to a local copy of {IMAGENET_URL.rsplit('/', 1)[-1]}, "
    "or to 'random' (a seeded stand-in, no ImageNet knowledge)"
)


def imagenet_checksum(url: str) -> Checksum:
    """The SHA-256 prefix torchvision embeds in its weight file names (resnet18-<sha256 prefix>.pth)."""
    match = re.search(r"-([a-f0-9]+)\.pth$", url)
    if match is None:
        raise ValueError(f"no hash in weights URL {url}")
    return Checksum("sha256", match.group(1))


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
        fetch(IMAGENET_URL, destination, checksum=imagenet_checksum(IMAGENET_URL), offline_hint=OFFLINE_HINT)
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
