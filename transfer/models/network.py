"""A ResNet (model.arch) split into a frozen prefix and a trainable suffix, with a new head of one output per class."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet

from transfer.config import BACKBONE_BLOCKS, STEMS, HeadConfig, StrategyConfig
from transfer.models.backbone import build_resnet, load_backbone_state

FEATURE_SIZE = 512  # channels out of ResNet18's (and ResNet34's) layer4; ResNet50's is 2048 (read from its fc)
DEFAULT_ARCH = "resnet18"  # what a model file written before model.arch existed holds


def build_head(head: HeadConfig, num_classes: int, in_features: int = FEATURE_SIZE) -> nn.Module:
    """A Linear features->classes, or an MLP features->hidden->classes with ReLU and dropout."""
    if head.hidden_size == 0:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(
        nn.Linear(in_features, head.hidden_size),
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
        self.train_layers = tuple(train_layers)
        self.frozen_blocks = tuple(block for name, block in blocks.items() if name not in train_layers)
        self.trainable_blocks = tuple(block for name, block in blocks.items() if name in train_layers)
        self.apply_partition()
        self.train()  # frozen blocks to eval mode from the start, not only after the first .train()

    def apply_partition(self) -> None:
        """requires_grad on exactly the trainable blocks and the head (another view of resnet may have changed it)."""
        for block in self.frozen_blocks:
            block.requires_grad_(False)
        for block in self.trainable_blocks:
            block.requires_grad_(True)
        self.resnet.fc.requires_grad_(True)

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


def with_train_layers(net: StrategyNet, train_layers: tuple[str, ...]) -> StrategyNet:
    """net itself when it already trains train_layers, else a new view over the same weights that does (a phase)."""
    if net.train_layers == tuple(train_layers):
        net.apply_partition()
        return net
    return StrategyNet(net.resnet, train_layers).train(net.training)


def apply_stem(resnet: ResNet, stem: str) -> ResNet:
    """resnet with the named stem: imagenet keeps torchvision's; cifar is a 3x3 stride-1 conv1 without max-pool."""
    if stem == "cifar":
        # At 32 px the ImageNet stem leaves layer4 a 1x1 map; this keeps 32x32 into layer1.
        resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    return resnet


def build_network(
    strategy: StrategyConfig,
    head: HeadConfig,
    num_classes: int,
    pretrained_path: Path,
    seed: int,
    arch: str = DEFAULT_ARCH,
) -> StrategyNet:
    """The strategy's network: backbone (pretrained or seeded random), new head, its first phase's frozen prefix."""
    torch.manual_seed(seed)  # the head, and for scratch the whole backbone, start from this seed
    resnet = build_resnet(arch)
    if strategy.pretrained:
        resnet.load_state_dict(load_backbone_state(pretrained_path, arch))
    resnet = apply_stem(resnet, strategy.stem)
    resnet.fc = build_head(head, num_classes, resnet.fc.in_features)
    return StrategyNet(resnet, strategy.run_phases()[0].train_layers)


def inference_architecture(checkpoint: dict) -> ResNet:
    """The untrained ResNet a model file's config describes: its arch, stem and head, one output per class name."""
    config = checkpoint["config"]
    resnet = build_resnet(config["model"].get("arch", DEFAULT_ARCH))
    resnet = apply_stem(resnet, config["strategy"].get("stem", STEMS[0]))
    head = HeadConfig(**config["model"]["head"])
    resnet.fc = build_head(head, len(checkpoint["class_names"]), resnet.fc.in_features)
    return resnet


def build_inference_network(checkpoint: dict) -> ResNet:
    """A torchvision ResNet18 holding a models/<strategy>.pt checkpoint's weights, its stem and head rebuilt."""
    resnet = inference_architecture(checkpoint)
    resnet.load_state_dict(checkpoint["state_dict"])
    return resnet.eval()


def count_parameters(net: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(parameter.numel() for parameter in net.parameters())
    trainable = sum(parameter.numel() for parameter in net.parameters() if parameter.requires_grad)
    return trainable, total
