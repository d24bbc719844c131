"""Images/s of one scratch ResNet18 training step at 32 px: the ImageNet stem against the CIFAR stem.

Run from the project root: .venv/bin/python -m benchmarks.stem_speed
fp32 on the CPU, batch 128, 100 classes, random tensors. Each stem is warmed up (1 step), then timed in
--repeats rounds of --steps steps interleaved with the other stem's, so load from other processes hits
both alike; the fastest round counts.
"""

import argparse
import time

import torch
from torchvision.models import resnet18

from transfer.config import STEMS
from transfer.models.network import apply_stem

BATCH_SIZE = 128
NUM_CLASSES = 100


def training_step(stem: str, images: torch.Tensor, labels: torch.Tensor):
    """A closure running one SGD step of a fresh network with the given stem."""
    net = apply_stem(resnet18(num_classes=NUM_CLASSES), stem).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    return step


def main() -> None:
    """Print images/s per stem and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    images, labels = torch.randn(BATCH_SIZE, 3, 32, 32), torch.randint(0, NUM_CLASSES, (BATCH_SIZE,))
    steps = {stem: training_step(stem, images, labels) for stem in STEMS}
    best = {stem: float("inf") for stem in STEMS}
    for _ in range(arguments.repeats):
        for stem, step in steps.items():
            started = time.perf_counter()
            for _ in range(arguments.steps):
                step()
            best[stem] = min(best[stem], time.perf_counter() - started)
    rates = {stem: arguments.steps * BATCH_SIZE / seconds for stem, seconds in best.items()}
    for stem, rate in rates.items():
        print(f"{stem}: {rate:.0f} images/s")
    print(f"cifar/imagenet: {rates['cifar'] / rates['imagenet']:.3f}")


if __name__ == "__main__":
    main()
