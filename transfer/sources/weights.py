"""Obtain the backbone weights model.weights names: torchvision's ImageNet release, a local file, or seeded random."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from transfer.atomic import atomic_path, save_torch
from transfer.config import IMAGENET_WEIGHTS, RANDOM_WEIGHTS, ModelConfig
from transfer.digest import Checksum
from transfer.errors import UserError
from transfer.models.backbone import build_resnet, load_backbone_state
from transfer.sources.fetch import fetch

IMAGENET_URL = ResNet18_Weights.IMAGENET1K_V1.url  # torchvision's IMAGENET1K_V1 release
# The file name carries only 8 hex digits (32 bits) of its SHA-256; the full digest and size are pinned here.
# Both were found identical in many independent public repositories (searched with the find_string tool),
# which check the same download.pytorch.org file before use.
IMAGENET_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
IMAGENET_BYTES = 46_830_571


@dataclass(frozen=True)
class ImagenetRelease:
    """torchvision's IMAGENET1K_V1 file of one architecture: where it is, its full SHA-256 and size."""

    url: str
    sha256: str
    size: int  # bytes


# resnet34 and resnet50: full digests and sizes found with the find_string tool in public repositories that
# verify the download.pytorch.org file (resnet34: two independent projects' weight manifests, 87,319,819 bytes;
# resnet50: nine, among them mlcommons-style conversion scripts and dataset READMEs, 102,530,333 bytes); each
# digest starts with the 8 hex digits of torchvision's file name.
IMAGENET_RELEASES = {
    "resnet18": ImagenetRelease(IMAGENET_URL, IMAGENET_SHA256, IMAGENET_BYTES),
    "resnet34": ImagenetRelease(
        ResNet34_Weights.IMAGENET1K_V1.url,
        "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f",
        87_319_819,
    ),
    "resnet50": ImagenetRelease(
        ResNet50_Weights.IMAGENET1K_V1.url,
        "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        102_530_333,
    ),
}


def offline_hint(arch: str) -> str:
    """What to set model.weights to without a network."""
    return (
        f"to work offline set model.weights to a local copy of {IMAGENET_RELEASES[arch].url.rsplit('/', 1)[-1]}, "
        "or to 'random' (a seeded stand-in, no ImageNet knowledge)"
    )


OFFLINE_HINT = offline_hint("resnet18")


def write_random_weights(destination: Path, seed: int, arch: str = "resnet18") -> None:
    """A seeded, freshly initialised state_dict of arch: the stand-in for ImageNet weights offline."""
    torch.manual_seed(seed)
    save_torch(build_resnet(arch).state_dict(), destination)


def obtain_weights(model: ModelConfig, destination: Path) -> None:
    """Write the weights model.weights names to destination, checked to be a state_dict of model.arch."""
    if model.weights == RANDOM_WEIGHTS:
        write_random_weights(destination, model.random_weights_seed, model.arch)
        return
    if model.weights == IMAGENET_WEIGHTS:
        release = IMAGENET_RELEASES[model.arch]
        checksum = Checksum("sha256", release.sha256)
        fetch(
            release.url, destination, checksum=checksum, max_bytes=release.size, offline_hint=offline_hint(model.arch)
        )
    else:
        source = Path(model.weights).expanduser()
        if not source.is_file():
            raise UserError(f"model.weights = '{model.weights}' is not a file, 'imagenet' or 'random'")
        load_backbone_state(source, model.arch)  # fail on a wrong file before copying it
        with atomic_path(destination) as temp_path:
            shutil.copyfile(source, temp_path)
    try:
        load_backbone_state(destination, model.arch)
    except UserError:
        destination.unlink()
        raise
