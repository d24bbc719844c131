"""Loss and top-k accuracy of a network over a batch source, from torchmetrics."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from transfer.compute.device import Compute
from transfer.compute.distributed import Ranks, sum_over_ranks
from transfer.models.network import StrategyNet, evaluating
from transfer.training.batches import FeatureBatches, ImageBatches


@dataclass(frozen=True)
class Scores:
    loss: float  # mean cross-entropy, nats per image
    top1: float  # fraction 0-1
    top5: float  # fraction 0-1
    confusion: torch.Tensor  # (classes, classes) int64 on the CPU: confusion[actual, predicted] = images
    top5_predictions: torch.Tensor  # (N, min(5, classes)) int64 on the CPU: each item's best classes, in item order


def confusion_counts(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(classes, classes) int64 counts of (actual, predicted) pairs, on the labels' device."""
    pairs = labels * num_classes + predicted
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)


def top_classes(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(B, min(k, classes)) class indices by falling score; ties go to the lower index, as argmax breaks them."""
    return torch.sort(logits, dim=1, descending=True, stable=True).indices[:, : min(k, logits.shape[1])]


def superclass_top1(confusion: torch.Tensor, fine_to_coarse: torch.Tensor) -> float:
    """Top-1 accuracy over superclasses: a prediction counts when it lies in the true class's superclass.

    fine_to_coarse is (classes,) with -1 for a class that has no image (never a true label).
    """
    same_superclass = (fine_to_coarse[:, None] == fine_to_coarse[None, :]) & (fine_to_coarse[:, None] >= 0)
    return (confusion[same_superclass].sum() / confusion.sum()).item()


class TopKAccuracy:
    """Running micro-averaged top-k accuracies (top-1 and top-5 unless told otherwise) over batches of logits."""

    def __init__(self, num_classes: int, device: torch.device, ks: tuple[int, ...] = (1, 5)):
        # validate_args=False: the checks read values back from the device on every update.
        self.metrics = [
            MulticlassAccuracy(
                num_classes=num_classes, top_k=min(k, num_classes), average="micro", validate_args=False
            ).to(device)
            for k in ks
        ]

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits (B, classes), labels (B,)."""
        logits = logits.detach().float()
        for metric in self.metrics:
            metric.update(logits, labels)

    def compute(self) -> tuple[float, ...]:
        """The accuracy for each k, in order, over every batch added so far."""
        return tuple(metric.compute().item() for metric in self.metrics)


def evaluate(
    net: StrategyNet,
    batches: ImageBatches | FeatureBatches,
    batch_size: int,
    num_classes: int,
    compute: Compute,
    ranks: Ranks = Ranks(),
) -> Scores:
    """Scores of net over every item of batches, in eval mode, without augmentation; each rank scores its share.

    Every rank returns the same scores, top-5 predictions of all items included.
    """
    device = batches.labels.device
    accuracy = TopKAccuracy(num_classes, device)
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes, num_classes, device=device, dtype=torch.int64)
    # Zero outside this rank's share, so summing over the ranks gathers every item's row in item order.
    top5_predictions = torch.zeros(len(batches), min(5, num_classes), device=device, dtype=torch.int64)
    with evaluating(net), torch.inference_mode():
        for indices in ranks.shard(torch.arange(len(batches), device=device)).split(batch_size):
            with compute.autocast():
                logits = batches.logits(net, indices).float()
            labels = batches.labels[indices]
            total_loss += F.cross_entropy(logits, labels, reduction="sum")
            accuracy.update(logits, labels)
            confusion += confusion_counts(logits.argmax(dim=1), labels, num_classes)
            top5_predictions[indices] = top_classes(logits)
    top1, top5 = accuracy.compute()  # torchmetrics sums its counts over the ranks itself
    loss = sum_over_ranks(total_loss).item() / len(batches)
    return Scores(
        loss=loss,
        top1=top1,
        top5=top5,
        confusion=sum_over_ranks(confusion).cpu(),
        top5_predictions=sum_over_ranks(top5_predictions).cpu(),
    )
