"""The yardsticks: a bare PyTorch training loop, and the same loop fed by the usual notebook DataLoader.

Both run without the train stage's process-wide settings, as a plain script would.
"""

import itertools
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.models import resnet18

from benchmarks.keys import SCRATCH
from benchmarks.measurement import WARMUP_STEPS, Contender
from benchmarks.workload import Bench
from transfer.datasets.cifar_format import NUM_CLASSES
from transfer.training.augment import IMAGENET_MEAN, IMAGENET_STD

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels)


class BareLoop:
    """Plain torchvision resnet18 with a 100-class fc and SGD with scratch's hyperparameters; one step at a time."""

    def __init__(self, bench: Bench):
        torch.manual_seed(bench.seed)
        self.compute = bench.compute
        self.model = resnet18(weights=None, num_classes=NUM_CLASSES).to(
            bench.compute.device, memory_format=bench.compute.memory_format
        )
        self.model.train()
        training = bench.params.strategy_named(SCRATCH).training
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=training.lr,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
            nesterov=training.momentum > 0,
        )

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        """Forward, cross_entropy, zero_grad, backward, step; nothing else."""
        amp_dtype = self.compute.amp_dtype
        with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(self.model(inputs), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def feed(self, batches: Iterable[Batch]) -> int:
        """Bare steps over batches already on the device; returns images seen."""
        seen = 0
        for inputs, labels in batches:
            self.step(inputs, labels)
            seen += len(labels)
        return seen

    def feed_from_host(self, batches: Iterable[Batch]) -> int:
        """Bare steps over host batches, each copied to the device in the compute's layout; returns images seen."""
        device, memory_format = self.compute.device, self.compute.memory_format
        return self.feed(
            (
                inputs.to(device, non_blocking=True).contiguous(memory_format=memory_format),
                labels.to(device, non_blocking=True),
            )
            for inputs, labels in batches
        )


def premade_batches(bench: Bench) -> list[Batch]:
    """Every full batch normalised ahead of time, on the device, in the compute's memory format."""
    split, size, memory_format = bench.split, bench.batch_size, bench.compute.memory_format
    return [
        (
            bench.normalization(split.images[start : start + size]).contiguous(memory_format=memory_format),
            split.labels[start : start + size],
        )
        for start in range(0, len(split) - size + 1, size)
    ]


def bare_contender(bench: Bench) -> Contender:
    """The bare loop over pre-made device tensors, warmed up."""
    loop = BareLoop(bench)
    batches = premade_batches(bench)
    loop.feed(batches[:WARMUP_STEPS])
    return lambda: loop.feed(batches)


class PilImages(Dataset):
    """The usual notebook Dataset: one HWC uint8 image at a time, as PIL, through torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(3, 32, 32) float, label."""
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def notebook_transform(image_size: int) -> transforms.Compose:
    """The usual CIFAR augmentation and ImageNet normalisation, resized as the project does above 32 px."""
    resize = [transforms.Resize(image_size)] if image_size != 32 else []
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            *resize,
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def notebook_loader(bench: Bench, workers: int) -> DataLoader:
    """DataLoader over PilImages, shuffled; drops the last partial batch like the project."""
    transform = notebook_transform(bench.params.data.image_size)
    dataset = PilImages(bench.data.train_images, bench.data.train_labels, transform)
    return DataLoader(
        dataset,
        batch_size=bench.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=bench.compute.device.type == "cuda",
        generator=torch.Generator().manual_seed(bench.seed),
    )


def loader_contender(bench: Bench, workers: int) -> Contender:
    """The bare step fed by notebook_loader, warmed up; every timed epoch starts the loader's workers afresh."""
    loop = BareLoop(bench)
    loader = notebook_loader(bench, workers)
    loop.feed_from_host(itertools.islice(loader, WARMUP_STEPS))
    return lambda: loop.feed_from_host(loader)
