"""A ResNet backbone's weights as the weights stage writes them: read and checked, nothing built on top.

Apart from model.py (the heads and the strategy network) so that the weights stage, which only
checks a file, does not rerun when the network head changes.
"""

from pathlib import Path

import torch
from torchvision.models import ResNet, resnet18, resnet34, resnet50

from transfer.errors import UserError

_BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}  # keys: config.ARCHITECTURES


def build_resnet(arch: str) -> ResNet:
    """An untrained torchvision ResNet of model.arch, with its 1000-class ImageNet fc."""
    return _BUILDERS[arch](weights=None)


def _expected_state(arch: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only: no memory, no draw from the global random stream
        return build_resnet(arch).state_dict()


def _looks_like(state: dict) -> str:
    """' (it looks like a resnet50's; set model.arch: resnet50)' when the keys and shapes match another arch."""
    for other in _BUILDERS:
        expected = _expected_state(other)
        if set(state) == set(expected) and all(
            isinstance(state[key], torch.Tensor) and state[key].shape == tensor.shape
            for key, tensor in expected.items()
        ):
            return f" (it looks like a {other} state_dict: set model.arch: {other})"
    return ""


def load_backbone_state(path: Path, arch: str = "resnet18") -> dict[str, torch.Tensor]:
    """A state_dict of model.arch from path, or a UserError naming the file and the problem."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"pretrained weights {path} are missing; run: dvc repro weights") from None
    except Exception:  # torch raises many types for a corrupt file, with advice that does not apply here
        raise UserError(
            f"pretrained weights {path} cannot be read as a PyTorch state_dict; model.weights takes "
            "'imagenet', 'random' or the path of a torchvision ResNet state_dict (.pth)"
        ) from None
    expected = _expected_state(arch)
    if not isinstance(state, dict) or set(state) != set(expected):
        hint = _looks_like(state) if isinstance(state, dict) else ""
        raise UserError(f"{path} is not a torchvision {arch} state_dict (its keys differ from {arch}'s){hint}")
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor):
            raise UserError(f"{path} is not a {arch} state_dict: {key} is a {type(state[key]).__name__}, not a tensor")
        if state[key].shape != tensor.shape:
            raise UserError(
                f"{path} is not a {arch} state_dict: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)}{_looks_like(state)}"
            )
    return state
