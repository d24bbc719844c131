"""Training FLOPs: counted on one batch by FlopCounterMode, per part of the network, and scaled to a run."""

import pytest
import torch
from torchvision.models import resnet18

from transfer.config import BACKBONE_BLOCKS, HeadConfig
from transfer.models.network import StrategyNet, build_head
from transfer.training.flops import (
    RunShape,
    cumulative_flops_by_epoch,
    flops_per_training_run,
    image_flops,
    images_trained_per_epoch,
)

NUM_CLASSES = 100
HEAD_FORWARD = 2 * 512 * NUM_CLASSES  # Linear 512->100: one multiply-add (2 FLOPs) per weight and image
# Default sizes of the real data: 45,000 training and 5,000 validation images.
TRAIN_IMAGES, VAL_IMAGES, BATCH_SIZE, EPOCHS = 45_000, 5_000, 128, 10


def network(train_layers: tuple[str, ...]) -> StrategyNet:
    """ResNet18 with a Linear head and the given blocks trainable (random weights: FLOPs ignore them)."""
    torch.manual_seed(0)
    resnet = resnet18(weights=None)
    resnet.fc = build_head(HeadConfig(hidden_size=0, dropout=0.0), NUM_CLASSES)
    return StrategyNet(resnet, train_layers)


def test_head_only_counts_the_head_by_hand():
    flops = image_flops(network(()), 32)
    assert flops.trainable_forward == HEAD_FORWARD
    # Backward computes the weight gradient (one more product of the same size), never one for the frozen input.
    assert flops.trainable_step == 2 * HEAD_FORWARD


def test_resnet18_forward_matches_its_published_size():
    # torchvision lists ResNet18 at 224 px as 1.81 G multiply-adds (rounded to 3 digits, so within 0.3%).
    flops = image_flops(network(BACKBONE_BLOCKS), 224)
    assert flops.frozen_forward == 0
    assert flops.trainable_forward == pytest.approx(2 * 1.81e9, rel=0.003)


def test_every_split_of_the_network_does_the_same_forward_work():
    whole = image_flops(network(BACKBONE_BLOCKS), 32).trainable_forward
    for train_layers in [(), ("layer4",), ("layer3", "layer4")]:
        flops = image_flops(network(train_layers), 32)
        assert flops.frozen_forward + flops.trainable_forward == whole
        assert flops.trainable_forward < flops.trainable_step < 3 * flops.trainable_forward


def test_counting_leaves_the_network_untouched():
    net = network(("layer4",))
    before = {key: value.clone() for key, value in net.state_dict().items()}
    image_flops(net, 32)
    after = net.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # BatchNorm statistics included
    assert [parameter.requires_grad for parameter in net.parameters()] == [
        parameter.requires_grad for parameter in network(("layer4",)).parameters()
    ]


def run_shape(batches_kind: str) -> RunShape:
    """A run of EPOCHS epochs over TRAIN_IMAGES at 32 px in batches of BATCH_SIZE, validating on VAL_IMAGES."""
    return RunShape(batches_kind, 32, BATCH_SIZE, TRAIN_IMAGES, VAL_IMAGES, EPOCHS)


def test_a_run_scales_the_per_image_counts():
    net = network(("layer4",))
    flops = image_flops(net, 32)
    trained = 44_928  # 351 full batches of 128: the last partial batch is dropped
    assert images_trained_per_epoch(TRAIN_IMAGES, BATCH_SIZE) == trained
    assert images_trained_per_epoch(100, BATCH_SIZE) == 100  # a set smaller than a batch is one batch
    per_epoch_images = trained * (flops.frozen_forward + flops.trainable_step) + VAL_IMAGES * (
        flops.frozen_forward + flops.trainable_forward
    )
    assert flops_per_training_run(net, run_shape("images")) == (EPOCHS * per_epoch_images)
    # Cached features: the frozen prefix runs once over train + val, each epoch starts from its output.
    cached = (TRAIN_IMAGES + VAL_IMAGES) * flops.frozen_forward + EPOCHS * (
        trained * flops.trainable_step + VAL_IMAGES * flops.trainable_forward
    )
    assert flops_per_training_run(net, run_shape("features")) == cached
    # By epoch: the same per-epoch step, the one-off feature pass inside the first epoch's entry.
    by_epoch = cumulative_flops_by_epoch(net, run_shape("features"))
    once = (TRAIN_IMAGES + VAL_IMAGES) * flops.frozen_forward
    assert by_epoch == [once + epoch * (cached - once) // EPOCHS for epoch in range(1, EPOCHS + 1)]


def test_default_strategies_order_by_cost():
    def run_flops(train_layers: tuple[str, ...], batches_kind: str = "images") -> int:
        return flops_per_training_run(network(train_layers), run_shape(batches_kind))

    shallow, deep, scratch = run_flops(()), run_flops(("layer4",)), run_flops(BACKBONE_BLOCKS)
    assert 0 < run_flops((), "features") < shallow < deep < scratch
    with pytest.raises(ValueError, match="batches_kind"):
        run_flops((), "cached")
