"""Training FLOPs of a strategy, counted by torch.utils.flop_counter.FlopCounterMode on one batch and scaled.

What is counted is what a training run executes (transfer/training/recipe.py fit()), image by image:
  - every epoch, each trained image (the full batches of data.shuffled_batches) runs forward through
    the frozen prefix, then forward and backward through the trainable blocks and the head; backward
    computes only the gradients autograd needs (none into the frozen prefix, none for the input);
  - every epoch, each validation image runs forward through the whole network;
  - when frozen features are cached (batches.caches_features), the frozen prefix instead runs once
    over the training and validation images, and each epoch starts from its output.
The test pass, the one-image probe of the cache size and the optimizer's update are not training
steps, or negligible, and are left out. FlopCounterMode counts matrix multiplies and convolutions
(a multiply-add is 2 FLOPs); BatchNorm, activations, pooling and the loss are elementwise and
below 1% of a ResNet18's work. The counts depend on the architecture, image size and data sizes
alone: the same on every machine, precision and memory layout.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from transfer.models.network import StrategyNet, backbone_blocks
from transfer.training.batches import frozen_output

FLOP_COUNT_BATCH = 2  # images in the counted batch: FLOPs grow linearly with it; train-mode BatchNorm needs 2
BATCH_KINDS = ("images", "features")  # where each step's input comes from: batches.ImageBatches or FeatureBatches


@dataclass(frozen=True)
class ImageFlops:
    """FLOPs per image of each part of a strategy's network."""

    frozen_forward: int  # the frozen prefix
    trainable_forward: int  # trainable blocks, pooling and head, as in validation
    trainable_step: int  # the same forward, then backward from the cross-entropy loss


def counted_flops(work) -> int:
    """FLOPs FlopCounterMode counts while work() runs."""
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def meta_copy(net: StrategyNet) -> StrategyNet:
    """The same architecture and frozen blocks on the meta device: shapes only, the original untouched."""
    # By parameter identity: backbone_blocks builds a new Sequential for the stem on every call.
    trainable_parameters = {id(parameter) for block in net.trainable_blocks for parameter in block.parameters()}
    trainable = [
        name
        for name, block in backbone_blocks(net.resnet).items()
        if id(next(block.parameters())) in trainable_parameters
    ]
    return StrategyNet(copy.deepcopy(net.resnet).to("meta"), tuple(trainable))


def image_flops(net: StrategyNet, image_size: int) -> ImageFlops:
    """FLOPs per image of the frozen prefix, the trainable part's forward, and its forward + backward."""
    counted = meta_copy(net)
    images = torch.zeros(FLOP_COUNT_BATCH, 3, image_size, image_size, device="meta")
    labels = torch.zeros(FLOP_COUNT_BATCH, dtype=torch.long, device="meta")
    frozen = counted_flops(lambda: frozen_output(counted, images))
    features = frozen_output(counted, images)

    def step() -> None:
        F.cross_entropy(counted(features, from_features=True), labels).backward()

    with torch.no_grad():
        forward = counted_flops(lambda: counted(features, from_features=True))
    return ImageFlops(frozen // FLOP_COUNT_BATCH, forward // FLOP_COUNT_BATCH, counted_flops(step) // FLOP_COUNT_BATCH)


def images_trained_per_epoch(train_images: int, batch_size: int) -> int:
    """Images in one epoch's full batches: data.shuffled_batches drops the last partial batch."""
    return train_images if train_images < batch_size else train_images // batch_size * batch_size


@dataclass(frozen=True)
class RunShape:
    """What a training run's FLOPs depend on besides the network (one phase of it, for a strategy with phases)."""

    batches_kind: str  # "images" (every step runs the frozen prefix) or "features" (cached once)
    image_size: int
    batch_size: int
    train_images: int
    val_images: int
    epochs: int
    passes_per_epoch: int = 1  # passes over the training images in one epoch (a smaller set's budget: subset.py)


def flops_per_training_run(net: StrategyNet, shape: RunShape) -> int:
    """FLOPs of training net for shape.epochs over its training images, validating after each (see module doc).

    A run made of phases (different trainable blocks, batch sizes or epochs) is the sum over its phases.
    """
    return cumulative_flops_by_epoch(net, shape)[-1]


def cumulative_flops_by_epoch(net: StrategyNet, shape: RunShape) -> list[int]:
    """The training FLOPs spent by the end of each epoch (one entry per epoch; the last is the run's total).

    Cached frozen features are computed before the first epoch, so they count in the first entry.
    """
    if shape.batches_kind not in BATCH_KINDS:
        raise ValueError(f"batches_kind {shape.batches_kind!r} is not one of {BATCH_KINDS}")
    per_image = image_flops(net, shape.image_size)
    trained = images_trained_per_epoch(shape.train_images, shape.batch_size) * shape.passes_per_epoch
    if shape.batches_kind == "features":
        once = (shape.train_images + shape.val_images) * per_image.frozen_forward
        per_epoch = trained * per_image.trainable_step + shape.val_images * per_image.trainable_forward
    else:
        once = 0
        per_epoch = trained * (per_image.frozen_forward + per_image.trainable_step) + shape.val_images * (
            per_image.frozen_forward + per_image.trainable_forward
        )
    return [once + epoch * per_epoch for epoch in range(1, shape.epochs + 1)]
