"""ResNet18 split into a frozen prefix and a trainable suffix, with a new CIFAR-100 head."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, resnet18

from stages.config import BACKBONE_BLOCKS, HeadConfig, StrategyConfig
from stages.errors import UserError

FEATURE_SIZE = 512  # channels out of ResNet18's layer4, the head's input


def build_head(head: HeadConfig, num_classes: int) -> nn.Module:
    """A Linear 512->classes, or an MLP 512->hidden->classes with ReLU and dropout."""
    if head.hidden_size == 0:
        return nn.Linear(FEATURE_SIZE, num_classes)
    return nn.Sequential(
        nn.Linear(FEATURE_SIZE, head.hidden_size),
        nn.ReLU(inplace=True),
        nn.Dropout(head.dropout),
        nn.Linear(head.hidden_size, num_classes),
    )


def backbone_blocks(resnet: ResNet) -> dict[str, nn.Module]:
    """The backbone's blocks by name, in forward order (names as in config.BACKBONE_BLOCKS)."""
    stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
    blocks = {
        "stem": stem,
        "layer1": resnet.layer1,
        "layer2": resnet.layer2,
        "layer3": resnet.layer3,
        "layer4": resnet.layer4,
    }
    assert tuple(blocks) == BACKBONE_BLOCKS
    return blocks


class StrategyNet(nn.Module):
    """A torchvision ResNet18 whose first blocks are frozen: run in eval mode, without autograd.

    `resnet` keeps torchvision's module names, so `net.resnet.state_dict()` loads into
    `torchvision.models.resnet18()` once its `fc` is replaced by the same head.
    """

    def __init__(self, resnet: ResNet, train_layers: tuple[str, ...]):
        super().__init__()
        self.resnet = resnet
        blocks = backbone_blocks(resnet)
        # Plain tuples, not ModuleLists: the blocks are already registered under `resnet`, and
        # registering them twice would duplicate every key of the state_dict.
        self.frozen_blocks = tuple(block for name, block in blocks.items() if name not in train_layers)
        self.trainable_blocks = tuple(block for name, block in blocks.items() if name in train_layers)
        for block in self.frozen_blocks:
            block.requires_grad_(False)
        self.train()  # frozen blocks to eval mode from the start, not only after the first .train()

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen prefix; (B, 3, H, W) -> (B, C, h, w). Never differentiated."""
        with torch.no_grad():
            for block in self.frozen_blocks:
                images = block(images)
        return images

    def forward_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Trainable suffix, pooling and head: frozen features -> logits (B, classes)."""
        for block in self.trainable_blocks:
            features = block(features)
        pooled = torch.flatten(self.resnet.avgpool(features), 1)
        return self.resnet.fc(pooled)

    def forward(self, inputs: torch.Tensor, from_features: bool = False) -> torch.Tensor:
        """Normalised images (B, 3, H, W), or the frozen blocks' output when from_features -> logits (B, classes).

        Both go through forward so that a DistributedDataParallel wrapper sees, and synchronises, either.
        """
        return self.forward_from_features(inputs if from_features else self.frozen_features(inputs))

    def train(self, mode: bool = True) -> "StrategyNet":
        """Like nn.Module.train, but frozen blocks stay in eval mode so BatchNorm statistics never move."""
        super().train(mode)
        for block in self.frozen_blocks:
            block.eval()
        return self


@contextmanager
def evaluating(net: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; the previous mode (StrategyNet keeps frozen blocks in eval) after it."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


def build_network(
    strategy: StrategyConfig, head: HeadConfig, num_classes: int, pretrained_path: Path, seed: int
) -> StrategyNet:
    """The strategy's network: backbone (pretrained or seeded random), new head, frozen prefix."""
    torch.manual_seed(seed)  # the head, and for scratch the whole backbone, start from this seed
    resnet = resnet18(weights=None)
    if strategy.pretrained:
        resnet.load_state_dict(load_backbone_state(pretrained_path))
    resnet.fc = build_head(head, num_classes)
    return StrategyNet(resnet, strategy.train_layers)


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


def count_parameters(net: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(parameter.numel() for parameter in net.parameters())
    trainable = sum(parameter.numel() for parameter in net.parameters() if parameter.requires_grad)
    return trainable, total


def build_inference_network(checkpoint: dict) -> ResNet:
    """A models/<strategy>.pt file's network in eval mode: head and stem as its stored config says."""
    config = checkpoint["config"]
    resnet = resnet18(weights=None)
    resnet.fc = build_head(HeadConfig(**config["model"]["head"]), len(checkpoint["class_names"]))
    if config["strategy"].get("stem", "imagenet") == "cifar":  # files from before the stem option: imagenet
        resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    resnet.load_state_dict(checkpoint["state_dict"])
    return resnet.eval()
