"""Where a batch's logits come from: augmented images through the whole network, or cached frozen features."""

import torch

from transfer.compute.device import Compute
from transfer.config import AugmentConfig
from transfer.models.network import StrategyNet, evaluating
from transfer.training.augment import Normalization, augmented
from transfer.training.prepared_data import ImageSplit, ordered_batches

MAX_FEATURE_CACHE_BYTES = 4 * 1024**3  # above this, frozen features are recomputed each epoch instead


class ImageBatches:
    """Batches of a uint8 split: augmented when a generator is given, then resized and normalised."""

    def __init__(
        self, split: ImageSplit, normalization: Normalization, augmentation: AugmentConfig | None, compute: Compute
    ):
        self.split = split
        self.labels = split.labels
        self.normalization = normalization
        self.augmentation = augmentation  # None: never augment
        self.compute = compute

    def __len__(self) -> int:
        return len(self.split)

    def inputs(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Network input for the images at indices: (B, 3, S, S) float."""
        images = self.split.batch(indices)
        if generator is not None and self.augmentation is not None:
            images = augmented(images, self.augmentation, generator)
        # Change the layout while the batch is uint8 (a quarter of the bytes); normalize keeps it.
        images = images.contiguous(memory_format=self.compute.memory_format)
        return self.normalization(images).contiguous(memory_format=self.compute.memory_format)

    def logits(self, net: StrategyNet, indices: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, classes) for the images at indices, through the whole network."""
        return net(self.inputs(indices, generator))


class FeatureBatches:
    """Batches of the frozen blocks' output, computed once: without augmentation it never changes."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features = features  # (N, C, h, w), as the frozen prefix (then pooling, for head-only) left it
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def logits(self, net: StrategyNet, indices: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, classes) from the cached features at indices; generator is unused (nothing random remains)."""
        return net(self.features[indices], from_features=True)


def feature_cache_bytes(net: StrategyNet, images: ImageBatches) -> int:
    """Memory the frozen features of every image would take, from one image's output."""
    with evaluating(net), torch.inference_mode(), images.compute.autocast():
        one = frozen_output(net, images.inputs(torch.zeros(1, dtype=torch.long, device=images.labels.device)))
    return one.numel() * one.element_size() * len(images)


def frozen_output(net: StrategyNet, inputs: torch.Tensor) -> torch.Tensor:
    """The frozen prefix's output; pooled right away when nothing trainable comes before the pooling.

    Pooling a 1x1 map again is exact, so the head sees the same numbers either way, and the cache
    for a head-only strategy shrinks to 512 values an image at any image size.
    """
    features = net.frozen_features(inputs)
    return net.resnet.avgpool(features) if not net.trainable_blocks else features


def cache_features(net: StrategyNet, images: ImageBatches, batch_size: int) -> FeatureBatches:
    """Run every image once through the frozen prefix (eval mode, no augmentation) and keep the output.

    Each batch's output is copied into one preallocated tensor, so memory peaks at the cache plus one
    batch (concatenating the batches, then cloning out of inference mode, peaked at three caches).
    """
    features = None  # (N, *one image's feature shape), allocated once the first batch shows that shape
    start = 0  # ordered_batches cover the images consecutively, in order
    with evaluating(net):
        for indices in ordered_batches(len(images), batch_size, images.labels.device):
            with torch.inference_mode(), images.compute.autocast():
                part = frozen_output(net, images.inputs(indices))
            if features is None:
                # Outside inference mode, so that autograd may later use the features as plain inputs.
                features = torch.empty((len(images), *part.shape[1:]), dtype=part.dtype, device=part.device)
            features[start : start + len(part)] = part
            start += len(part)
    return FeatureBatches(features, images.labels)


def training_batches(
    net: StrategyNet, images: ImageBatches, augments: bool, batch_size: int
) -> ImageBatches | FeatureBatches:
    """The cheapest correct source of training logits: cached features when nothing random precedes training."""
    if caches_features(net, images, augments):
        return cache_features(net, images, batch_size)
    if not augments and net.frozen_blocks:
        needed = feature_cache_bytes(net, images)
        print(
            f"frozen features would need {needed / 1024**3:.1f} GiB; recomputing them every epoch instead", flush=True
        )
    return images


def caches_features(net: StrategyNet, images: ImageBatches, augments: bool) -> bool:
    """Whether training_batches caches frozen features: nothing random precedes training and they fit in memory."""
    if augments or not net.frozen_blocks:
        return False
    return feature_cache_bytes(net, images) <= MAX_FEATURE_CACHE_BYTES
