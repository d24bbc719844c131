"""A ResNet18 backbone's weights as the weights stage writes them: read and checked, nothing built on top.

Apart from model.py (the heads and the strategy network) so that the weights stage, which only
checks a file, does not rerun when the network head changes.
"""

from pathlib import Path

import torch
from torchvision.models import resnet18

from transfer.errors import UserError


def load_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet18 state_dict from path, or a UserError naming the file and the problem."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"pretrained weights {path} are missing; run: dvc repro weights") from None
    except Exception:  # torch raises many types for a corrupt file, with advice that does not apply here
        raise UserError(
            f"pretrained weights {path} cannot be read as a PyTorch state_dict; model.weights takes "
            "'imagenet', 'random' or the path of a ResNet18 state_dict (.pth)"
        ) from None
    with torch.device("meta"):  # shapes only: no memory, no draw from the global random stream
        expected = resnet18(weights=None).state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise UserError(f"{path} is not a torchvision ResNet18 state_dict (its keys differ from resnet18's)")
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor):
            raise UserError(
                f"{path} is not a ResNet18 state_dict: {key} is a {type(state[key]).__name__}, not a tensor"
            )
        if state[key].shape != tensor.shape:
            raise UserError(
                f"{path} is not a ResNet18 state_dict: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    return state
