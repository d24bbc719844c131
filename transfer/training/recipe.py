"""The training recipe, top to bottom: optimizer, schedule, one epoch, one phase, every phase of a run.

A run trains a strategy's network with one seed through its phases (one phase unless the
strategy lists `phases`, as LP-FT does). Each phase builds a fresh optimizer and schedule over the
blocks it trains, feeds cached frozen features when nothing random precedes them, and validates
after every epoch; the best-validation weights are kept. Every epoch draws its shuffling and
augmentation from a generator seeded by (seed, epoch), so a run resumed from its checkpoint
replays the exact epochs an uninterrupted one would have.
"""

import dataclasses
import math
import time

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from transfer.compute.distributed import sum_over_ranks
from transfer.config import PhaseConfig, TrainingConfig
from transfer.errors import UserError
from transfer.models.network import StrategyNet, with_train_layers
from transfer.training.batches import FeatureBatches, ImageBatches, cache_features, training_batches
from transfer.training.checkpoint import EpochCheckpoints, FitProgress
from transfer.training.context import RunContext
from transfer.training.evaluation import Scores, TopKAccuracy, evaluate
from transfer.training.live_history import write_live_history
from transfer.training.prepared_data import epoch_generator, shuffled_batches

PROGRESS_EVERY_STEPS = 10  # steps between progress-bar loss updates (each reads the loss back from the device)

# --- optimizer and schedule ----------------------------------------------------------------------


def build_optimizer(net: StrategyNet, training: TrainingConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the network's trainable parameters only."""
    trainable = [parameter for parameter in net.parameters() if parameter.requires_grad]
    if training.optimizer == "sgd":
        return torch.optim.SGD(
            trainable,
            lr=training.lr,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
            nesterov=training.momentum > 0,
        )
    if training.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=training.lr, weight_decay=training.weight_decay)
    if training.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=training.lr, weight_decay=training.weight_decay)
    raise ValueError(f"unhandled optimizer {training.optimizer!r}")  # config validation lists the valid ones


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The configured per-epoch learning-rate schedule."""
    if training.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=training.epochs)
    if training.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=training.step_epochs, gamma=training.gamma)
    if training.scheduler == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"unhandled scheduler {training.scheduler!r}")


# --- where a phase's batches come from -----------------------------------------------------------


def phase_batches(net: StrategyNet, run: RunContext) -> tuple[ImageBatches | FeatureBatches, ...]:
    """(training, validation) batches for a phase training net's blocks.

    Built per phase: a later phase never reuses features an earlier phase's frozen prefix cached.
    Validation never augments, so cached frozen features serve it whenever training uses them.
    """
    eval_batch_size = run.params.compute.eval_batch_size
    train_images = run.images("train", augmented=run.strategy.augment)
    train_batches = training_batches(net, train_images, run.strategy.augment, eval_batch_size)
    val_images = run.images("val")
    if isinstance(train_batches, FeatureBatches):
        return train_batches, cache_features(net, val_images, eval_batch_size)
    return train_batches, val_images


def score_network(net: StrategyNet, batches: ImageBatches | FeatureBatches, run: RunContext) -> Scores:
    """Loss, accuracies, confusion and top-5 predictions of net over every item of batches (eval mode)."""
    return evaluate(net, batches, run.params.compute.eval_batch_size, run.num_classes, run.compute, run.ranks)


# --- one epoch -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhasePlan:
    """Where one phase sits in a run: its number (None without `phases`), its config and its epochs."""

    number: int | None
    phase: PhaseConfig
    first_epoch: int  # 1-based, counted over all phases
    total_epochs: int  # of all phases

    @property
    def last_epoch(self) -> int:
        """The phase's last epoch, counted over all phases."""
        return self.first_epoch + self.phase.training.epochs - 1

    def describe_epoch(self, run: RunContext, epoch: int) -> str:
        """E.g. 'train@lpft seed 0 phase 2 epoch 3/4', the progress bar's and log line's prefix."""
        phase_note = f" phase {self.number}" if self.number else ""
        return f"{run.label}{phase_note} epoch {epoch}/{self.total_epochs}"


def train_one_epoch(
    net: StrategyNet | DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    batches: ImageBatches | FeatureBatches,
    run: RunContext,
    plan: PhasePlan,
    epoch: int,
) -> tuple[float, float, int]:
    """One epoch over the shuffled (and, for images, augmented) training set: run.passes_per_epoch passes (1 but
    for a smaller training set); returns (mean loss, top-1, images seen).

    Every rank draws the same permutation and trains on its share of each global batch of
    batch_size images; DDP averages the gradients, so a step means what it means in one process.
    """
    net.train()
    device = batches.labels.device
    ranks, description = run.ranks, plan.describe_epoch(run, epoch)
    generator = epoch_generator(run.seed, epoch, run.compute.device)
    accuracy = TopKAccuracy(run.num_classes, device, ks=(1,))  # history has no train top-5: skip its cost
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    # A smaller training set's epoch may be several passes (transfer/training/subset.py); each its own permutation.
    batch_size = plan.phase.training.batch_size
    global_batches = [
        batch for _ in range(run.passes_per_epoch) for batch in shuffled_batches(len(batches), batch_size, generator)
    ]
    progress = tqdm(
        global_batches, desc=description, unit="batch", leave=False, disable=None if ranks.is_main else True
    )
    for step, global_indices in enumerate(progress, start=1):
        indices = ranks.shard(global_indices)
        labels = batches.labels[indices]
        with run.compute.autocast():
            logits = batches.logits(net, indices, generator)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(indices)
        seen += len(indices)
        accuracy.update(logits, labels)
        if step % PROGRESS_EVERY_STEPS == 0 or step == len(progress):
            # Reading the loss back costs a device sync, so only every few steps.
            running_loss = loss_sum.item() / seen
            if not math.isfinite(running_loss):
                raise UserError(
                    f"{description}: the loss became {running_loss} by step {step} "
                    f"at lr {optimizer.param_groups[0]['lr']:.4g}; "
                    "lower the learning rate (strategy.lr) and run again; no results were written"
                )
            progress.set_postfix(loss=f"{running_loss:.3f}")
    (train_top1,) = accuracy.compute()  # torchmetrics sums its counts over the ranks itself
    loss_sum, seen = sum_over_ranks(loss_sum).item(), int(sum_over_ranks(torch.tensor(seen, device=device)).item())
    return loss_sum / seen, train_top1, seen


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One row of history.json."""

    epoch: int  # 1-based
    lr: float  # learning rate used during this epoch
    train_loss: float  # mean cross-entropy over the epoch's augmented batches
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float


def history_row(record: EpochRecord, phase_number: int | None) -> dict:
    """One row of history.json; `phase` (1-based) follows `epoch` only for strategies with phases."""
    row = dataclasses.asdict(record)
    if phase_number is None:
        return row
    return {"epoch": row.pop("epoch"), "phase": phase_number, **row}


# --- one phase -----------------------------------------------------------------------------------


def fit_phase(
    net: StrategyNet,
    run: RunContext,
    plan: PhasePlan,
    checkpoints: EpochCheckpoints,
    progress: FitProgress,
    resumed: dict,
) -> None:
    """One phase's epochs on a view of net training its blocks, with a fresh (or resumed) optimizer and schedule."""
    training = plan.phase.training
    net = with_train_layers(net, plan.phase.train_layers)
    if run.params.compute.compile and net.train_layers != run.strategy.run_phases()[0].train_layers:
        net.compile()  # a new view: runs.train_seed compiled the first phase's
    train_batches, val_batches = phase_batches(net, run)
    optimizer = build_optimizer(net, training)
    scheduler = build_scheduler(optimizer, training)
    if resumed:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    # Wrapped after loading, so every rank starts from the same (checkpointed or seeded) weights.
    device = run.compute.device
    trained = (
        DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if run.ranks.distributed
        else net
    )
    for epoch in range(max(progress.completed_epochs + 1, plan.first_epoch), plan.last_epoch + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_top1, seen = train_one_epoch(trained, optimizer, train_batches, run, plan, epoch)
        progress.images_trained += seen
        progress.train_seconds += time.perf_counter() - started
        scheduler.step()
        val = score_network(net, val_batches, run)
        progress.epoch_seconds.append(time.perf_counter() - started)
        record = EpochRecord(epoch, lr, train_loss, train_top1, val.loss, val.top1, val.top5)
        progress.history.append(history_row(record, plan.number))
        if progress.best_epoch == 0 or val.top1 > progress.history[progress.best_epoch - 1]["val_top1"]:
            progress.best_epoch = epoch
            progress.best_state = {key: value.detach().clone() for key, value in net.state_dict().items()}
        if not run.ranks.is_main:
            continue
        checkpoints.save(net, optimizer, scheduler, progress)
        write_live_history(run.output_name, run.strategy.training.seeds, run.seed, progress.history)
        print(
            f"{plan.describe_epoch(run, epoch)}: lr {lr:.4g}  train loss {train_loss:.4f} top1 {train_top1:.4f}  "
            f"val loss {val.loss:.4f} top1 {val.top1:.4f} top5 {val.top5:.4f}  ({progress.epoch_seconds[-1]:.1f} s)",
            flush=True,
        )


# --- every phase of a run ------------------------------------------------------------------------


def fit(net: StrategyNet, run: RunContext, checkpoints: EpochCheckpoints) -> FitProgress:
    """Train through the strategy's phases with the run's seed (continuing a matching checkpoint)."""
    progress, saved = checkpoints.load(net)
    if progress.completed_epochs and run.ranks.is_main:
        print(f"{run.label}: resuming after epoch {progress.completed_epochs} from {checkpoints.path}", flush=True)
    phases = run.strategy.run_phases()
    total_epochs = sum(phase.training.epochs for phase in phases)
    first_epoch = 1
    for number, phase in enumerate(phases, start=1):
        plan = PhasePlan(number if run.strategy.phases else None, phase, first_epoch, total_epochs)
        if progress.completed_epochs < plan.last_epoch:
            # A checkpoint saved at a phase's last epoch starts the next phase with a fresh optimizer.
            resumed = saved if progress.completed_epochs >= first_epoch else {}
            fit_phase(net, run, plan, checkpoints, progress, resumed)
        first_epoch = plan.last_epoch + 1
    return progress
