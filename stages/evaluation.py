"""Loss and top-k accuracy of a network on a split, from torchmetrics."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from stages.data import ImageSplit, normalize, ordered_batches


@dataclass(frozen=True)
class Scores:
    loss: float  # mean cross-entropy, nats per image
    top1: float  # fraction 0-1
    top5: float  # fraction 0-1


class TopKAccuracy:
    """Running micro-averaged top-1 and top-5 accuracy over batches of logits."""

    def __init__(self, num_classes: int, device: torch.device):
        self.top1 = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro").to(device)
        self.top5 = MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro").to(device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits (B, classes), labels (B,)."""
        logits = logits.detach().float()
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)

    def compute(self) -> tuple[float, float]:
        """(top1, top5) over every batch added so far."""
        return self.top1.compute().item(), self.top5.compute().item()


def evaluate(net: nn.Module, split: ImageSplit, batch_size: int, image_size: int, num_classes: int) -> Scores:
    """Scores of net on split, in eval mode without augmentation."""
    was_training = net.training
    net.eval()
    accuracy = TopKAccuracy(num_classes, split.images.device)
    total_loss = torch.zeros((), device=split.images.device, dtype=torch.float64)
    with torch.inference_mode():
        for indices in ordered_batches(len(split), batch_size, split.images.device):
            logits = net(normalize(split.images[indices], image_size)).float()
            labels = split.labels[indices]
            total_loss += F.cross_entropy(logits, labels, reduction="sum")
            accuracy.update(logits, labels)
    net.train(was_training)
    top1, top5 = accuracy.compute()
    return Scores(loss=total_loss.item() / len(split), top1=top1, top5=top5)
