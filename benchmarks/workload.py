"""What every contender shares: the config, where it computes, the same synthetic images, and the weights."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer.compute.device import Compute
from transfer.config import Params, StrategyConfig
from transfer.datasets.cifar_format import NUM_CLASSES
from transfer.sources.weights import write_random_weights
from transfer.training.augment import Normalization
from transfer.training.batches import ImageBatches
from transfer.training.context import RunContext
from transfer.training.prepared_data import ImageSplit, PreparedData

CLASSES_PER_SUPERCLASS = 5  # CIFAR-100's 20 superclasses of 5 classes; the benchmark never reads them


@dataclass(frozen=True)
class Bench:
    """The config, where it computes, and the same synthetic images for every contender."""

    params: Params
    compute: Compute  # params' compute with the command line's device and precision
    batch_size: int  # images per step, for every contender alike
    data: PreparedData  # the synthetic images as the prepare stage writes them (train split only)
    split: ImageSplit  # the same images on the device, (N, 3, 32, 32) uint8, shared by every contender
    pretrained_path: Path  # seeded random ResNet18 weights, the stand-in for ImageNet

    @property
    def seed(self) -> int:
        """The first training seed of params.yaml: every contender draws from it."""
        return self.params.strategy.seeds[0]

    @property
    def normalization(self) -> Normalization:
        """The network input every contender makes: data.image_size and ImageNet statistics."""
        return Normalization(self.params.data.image_size)


def synthetic_data(num_images: int, seed: int) -> PreparedData:
    """Random uint8 images (N, 32, 32, 3) and labels (N,), seeded, as the train split of an otherwise empty set."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=num_images, dtype=np.int64)
    empty_images, empty_labels = images[:0], labels[:0]
    return PreparedData(
        train_images=images,
        train_labels=labels,
        val_images=empty_images,
        val_labels=empty_labels,
        test_images=empty_images,
        test_labels=empty_labels,
        class_names=tuple(map(str, range(NUM_CLASSES))),
        fine_to_coarse=np.arange(NUM_CLASSES) // CLASSES_PER_SUPERCLASS,
        coarse_class_names=tuple(map(str, range(NUM_CLASSES // CLASSES_PER_SUPERCLASS))),
    )


def make_bench(params: Params, compute: Compute, num_images: int, batch_size: int, pretrained_path: Path) -> Bench:
    """Synthetic images on the device and random weights at pretrained_path."""
    data = synthetic_data(num_images, params.strategy.seeds[0])
    write_random_weights(pretrained_path, params.model.random_weights_seed)
    return Bench(params, compute, batch_size, data, data.split("train", compute.device), pretrained_path)


def run_context(bench: Bench, strategy: StrategyConfig, compute: Compute | None = None) -> RunContext:
    """The RunContext a train stage would make for strategy on the bench's data (in compute, else the bench's)."""
    return RunContext(bench.params, strategy, bench.data, compute or bench.compute, bench.seed)


def image_batches(bench: Bench, compute: Compute, augmented: bool, num_images: int | None = None) -> ImageBatches:
    """The first num_images (default all) of the bench's images as a train stage batches them, data.augment or none.

    Not RunContext.images: that copies the split to the device on every call, once per contender.
    """
    split = bench.split
    if num_images is not None:
        split = ImageSplit(split.images[:num_images], split.labels[:num_images])
    augmentation = bench.params.data.augment if augmented else None
    return ImageBatches(split, bench.normalization, augmentation, compute)
