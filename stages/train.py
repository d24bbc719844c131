"""Stage train@<strategy>: train one strategy, keep its best-validation weights, score them on the test set.

Run as: python -m stages.train <strategy>
"""

import argparse
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from stages import paths
from stages.aggregate import combine_histories, combine_metrics
from stages.atomic import save_npz, save_torch, write_json
from stages.batches import FeatureBatches, ImageBatches, cache_features, caches_features, training_batches
from stages.checkpoint import EpochCheckpoints, FitProgress, run_key
from stages.config import Params, PhaseConfig, StrategyConfig, TrainingConfig, load_params
from stages.data import IMAGENET_MEAN, IMAGENET_STD, PreparedData, epoch_generator, load_prepared, shuffled_batches
from stages.device import Compute, make_deterministic, resolve_compute
from stages.distributed import (
    Ranks,
    check_world_size,
    ranks_from_torchrun,
    relaunch_under_torchrun,
    start_processes,
    stop_processes,
    sum_over_ranks,
)
from stages.errors import UserError, run_stage
from stages.evaluation import Scores, TopKAccuracy, evaluate, superclass_top1
from stages.flops import flops_per_training_run
from stages.live import discard_live_history, write_live_history
from stages.model import StrategyNet, build_network, count_parameters, with_train_layers
from stages.provenance import library_versions

PROGRESS_EVERY_STEPS = 10  # steps between progress-bar loss updates (each reads the loss back from the device)


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """What one seed's training run produced, once its best-validation weights are tested."""

    seed: int
    metrics: dict  # seeds/seed_<n>/metrics.json
    history: list[dict]  # seeds/seed_<n>/history.json
    confusion: torch.Tensor  # (classes, classes) int64 test-set counts
    timing: dict  # seeds/seed_<n>/timing.json
    top5_predictions: torch.Tensor  # (test images, 5) int64: predictions/<strategy>/seed_<n>.npz


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


def train_one_epoch(
    net: StrategyNet | DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    batches: ImageBatches | FeatureBatches,
    batch_size: int,
    generator: torch.Generator,
    compute: Compute,
    num_classes: int,
    description: str,
    ranks: Ranks = Ranks(),
) -> tuple[float, float, int]:
    """One pass over the shuffled (and, for images, augmented) training set; returns (mean loss, top-1, images seen).

    Every rank draws the same permutation and trains on its share of each global batch of
    batch_size images; DDP averages the gradients, so a step means what it means in one process.
    """
    net.train()
    device = batches.labels.device
    accuracy = TopKAccuracy(num_classes, device, ks=(1,))  # history has no train top-5: skip its cost
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    global_batches = shuffled_batches(len(batches), batch_size, generator)
    progress = tqdm(
        global_batches, desc=description, unit="batch", leave=False, disable=None if ranks.is_main else True
    )
    for step, global_indices in enumerate(progress, start=1):
        indices = ranks.shard(global_indices)
        labels = batches.labels[indices]
        with compute.autocast():
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


def fit(
    net: StrategyNet,
    strategy: StrategyConfig,
    params: Params,
    data: PreparedData,
    compute: Compute,
    checkpoints: EpochCheckpoints,
    seed: int,
    ranks: Ranks = Ranks(),
) -> FitProgress:
    """Train through the strategy's phases with one seed (continuing a matching checkpoint), validating each epoch."""
    progress, saved = checkpoints.load(net)
    if progress.completed_epochs and ranks.is_main:
        print(
            f"train@{strategy.name} seed {seed}: resuming after epoch {progress.completed_epochs} "
            f"from {checkpoints.path}",
            flush=True,
        )
    phases = strategy.run_phases()
    total_epochs = sum(phase.training.epochs for phase in phases)
    first_epoch = 1
    for number, phase in enumerate(phases, start=1):
        plan = PhasePlan(number if strategy.phases else None, phase, first_epoch, total_epochs)
        if progress.completed_epochs < plan.last_epoch:
            # A checkpoint saved at a phase's last epoch starts the next phase with a fresh optimizer.
            resumed = saved if progress.completed_epochs >= first_epoch else {}
            fit_phase(net, plan, strategy, params, data, compute, checkpoints, seed, progress, resumed, ranks)
        first_epoch = plan.last_epoch + 1
    return progress


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


def fit_phase(
    net: StrategyNet,
    plan: PhasePlan,
    strategy: StrategyConfig,
    params: Params,
    data: PreparedData,
    compute: Compute,
    checkpoints: EpochCheckpoints,
    seed: int,
    progress: FitProgress,
    resumed: dict,
    ranks: Ranks = Ranks(),
) -> None:
    """One phase's epochs on a view of net training its blocks, with a fresh (or resumed) optimizer and schedule."""
    training = plan.phase.training
    net = with_train_layers(net, plan.phase.train_layers)
    if params.compute.compile and net.train_layers != strategy.run_phases()[0].train_layers:
        net.compile()  # a new view: train_seed compiled the first phase's
    num_classes = len(data.class_names)
    eval_batch_size = params.compute.eval_batch_size
    augment_config = params.data.augment if strategy.augment else None
    train_images = ImageBatches(data.split("train", compute.device), params.data.image_size, augment_config, compute)
    # Built per phase: a later phase never reuses features an earlier phase's frozen prefix cached.
    train_batches = training_batches(net, train_images, strategy.augment, eval_batch_size)
    val_images = ImageBatches(data.split("val", compute.device), params.data.image_size, None, compute)
    # Validation never augments, so cached frozen features serve it whenever training uses them.
    val_batches = (
        cache_features(net, val_images, eval_batch_size) if isinstance(train_batches, FeatureBatches) else val_images
    )
    optimizer = build_optimizer(net, training)
    scheduler = build_scheduler(optimizer, training)
    if resumed:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    # Wrapped after loading, so every rank starts from the same (checkpointed or seeded) weights.
    trained = (
        DistributedDataParallel(net, device_ids=[compute.device.index] if compute.device.type == "cuda" else None)
        if ranks.distributed
        else net
    )
    for epoch in range(max(progress.completed_epochs + 1, plan.first_epoch), plan.last_epoch + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        phase_note = f" phase {plan.number}" if plan.number else ""
        description = f"train@{strategy.name} seed {seed}{phase_note} epoch {epoch}/{plan.total_epochs}"
        generator = epoch_generator(seed, epoch, compute.device)
        train_loss, train_top1, seen = train_one_epoch(
            trained, optimizer, train_batches, training.batch_size, generator, compute, num_classes, description, ranks
        )
        progress.images_trained += seen
        progress.train_seconds += time.perf_counter() - started
        scheduler.step()
        val = evaluate(net, val_batches, eval_batch_size, num_classes, compute, ranks)
        progress.epoch_seconds.append(time.perf_counter() - started)
        record = EpochRecord(epoch, lr, train_loss, train_top1, val.loss, val.top1, val.top5)
        progress.history.append(history_row(record, plan.number))
        if progress.best_epoch == 0 or val.top1 > progress.history[progress.best_epoch - 1]["val_top1"]:
            progress.best_epoch = epoch
            progress.best_state = {key: value.detach().clone() for key, value in net.state_dict().items()}
        if not ranks.is_main:
            continue
        checkpoints.save(net, optimizer, scheduler, progress)
        write_live_history(strategy.name, strategy.training.seeds, seed, progress.history)
        print(
            f"{description}: lr {lr:.4g}  train loss {train_loss:.4f} top1 {train_top1:.4f}  "
            f"val loss {val.loss:.4f} top1 {val.top1:.4f} top5 {val.top5:.4f}  ({progress.epoch_seconds[-1]:.1f} s)",
            flush=True,
        )


def history_row(record: EpochRecord, phase_number: int | None) -> dict:
    """One row of history.json; `phase` (1-based) follows `epoch` only for strategies with phases."""
    row = dataclasses.asdict(record)
    if phase_number is None:
        return row
    return {"epoch": row.pop("epoch"), "phase": phase_number, **row}


def resolved_config(params: Params, strategy: StrategyConfig) -> dict:
    """The params this stage declares in dvc.yaml, resolved for this strategy (stored beside the weights).

    Only declared keys: anything else could change without this stage rerunning and go stale.
    The data and backbone weights are pinned by their hashes in dvc.lock.
    """
    return {
        "strategy": dataclasses.asdict(strategy),
        "data": {"image_size": params.data.image_size, "augment": dataclasses.asdict(params.data.augment)},
        "model": {"head": dataclasses.asdict(params.model.head)},
        "compute": dataclasses.asdict(params.compute),
    }


def final_metrics(test: Scores, progress: FitProgress, net: StrategyNet, fine_to_coarse: torch.Tensor) -> dict:
    """One seed's metrics.json: test scores of its best-validation weights, and the network's size."""
    trainable, total = count_parameters(net)
    return {
        "test_top1": round(test.top1, 6),
        "test_top1_coarse": round(superclass_top1(test.confusion, fine_to_coarse), 6),
        "test_top5": round(test.top5, 6),
        "test_loss": round(test.loss, 6),
        "best_val_top1": round(progress.history[progress.best_epoch - 1]["val_top1"], 6),
        "best_epoch": progress.best_epoch,
        "trainable_params": trainable,
        "total_params": total,
    }


def provenance(params: Params, strategy: StrategyConfig, compute: Compute, model_seed: int) -> dict:
    """What produced a result: the strategy, its resolved config, the saved model's seed, library versions, device."""
    return {
        "strategy": strategy.name,
        "model_seed": model_seed,
        "config": resolved_config(params, strategy),
        "versions": library_versions(),
        "device": compute.describe(),
    }


def save_model(
    net: StrategyNet, strategy: StrategyConfig, params: Params, data: PreparedData, compute: Compute, seed: int
) -> None:
    """models/<strategy>.pt: one seed's weights in torchvision's layout, with what it takes to use and rerun them."""
    checkpoint = {
        # On the CPU in the default layout, so loading never depends on where or how it was trained.
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in net.resnet.state_dict().items()},
        "class_names": list(data.class_names),
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": params.data.image_size},
        **provenance(params, strategy, compute, seed),
    }
    save_torch(checkpoint, paths.model_path(strategy.name))


def run(strategy_name: str) -> None:
    """Train one strategy from params.yaml and write its model, metrics, history and timing."""
    params = load_params()
    strategy = params.strategy_named(strategy_name)
    ranks = ranks_from_torchrun()
    check_world_size(ranks, params.compute.nproc)
    if strategy.training.batch_size % ranks.world_size:
        raise UserError(
            f"batch size {strategy.training.batch_size} of train@{strategy.name} does not split over compute.nproc = "
            f"{ranks.world_size} processes; use a multiple of {ranks.world_size}"
        )
    make_deterministic()
    compute = resolve_compute(params.compute, ranks.local_rank)
    start_processes(ranks, compute.device)
    try:
        train_and_write(params, strategy, compute, ranks)
    except BaseException:  # a mistake, a diverging loss or Ctrl-C: no partial results stay behind
        if ranks.is_main:
            discard_live_history(strategy.name)
        raise
    finally:
        stop_processes()


def train_and_write(params: Params, strategy: StrategyConfig, compute: Compute, ranks: Ranks) -> None:
    """Choose the lr, train and test once per seed, then (rank 0) write per-seed and combined results and the model."""
    data = load_prepared(paths.PREPARED_PATH)
    started = time.perf_counter()
    first_seed = strategy.training.seeds[0]
    search_rows, first_run, first_net = search_lr(params, strategy, data, compute, first_seed, ranks)
    chosen = strategy.at_lr(first_run.metrics["lr"])
    runs: list[SeedRun] = []
    model_run, model_net = None, None
    for seed in strategy.training.seeds:
        # The first seed's run at the chosen lr is reused, not repeated.
        run, net = (
            (first_run, first_net) if seed == first_seed else train_seed(params, chosen, data, compute, seed, ranks)
        )
        # The saved model is the seed with the best validation top-1 (the first on a tie): chosen
        # without looking at the test set, like the epoch within a run.
        if model_run is None or run.metrics["best_val_top1"] > model_run.metrics["best_val_top1"]:
            model_run, model_net = run, net
        runs.append(run)
    if not ranks.is_main:
        return
    save_model(model_net, chosen, params, data, compute, model_run.seed)
    for run in runs:
        write_seed_results(strategy.name, run, data)
    write_json(paths.lr_search_path(strategy.name), search_rows)
    write_json(paths.history_path(strategy.name), combine_histories([run.history for run in runs]))
    write_json(paths.metrics_path(strategy.name), combine_metrics([run.metrics for run in runs]))
    write_json(paths.confusion_path(strategy.name), confusion_record(data, runs))
    write_json(paths.provenance_path(strategy.name), provenance(params, chosen, compute, model_run.seed))
    write_json(paths.timing_path(strategy.name), combined_timing(runs, time.perf_counter() - started, compute))
    shutil.rmtree(
        paths.checkpoint_dir(strategy.name), ignore_errors=True
    )  # every seed's: the outputs now hold their results


def search_lr(
    params: Params, strategy: StrategyConfig, data: PreparedData, compute: Compute, seed: int, ranks: Ranks
) -> tuple[list[dict], SeedRun, StrategyNet]:
    """Train one seed per lr candidate; lr_search.json's rows, and the run with the best validation top-1.

    Ties go to the first candidate listed; the test set plays no part. One candidate is one plain run.
    """
    rows, best = [], None
    for lr in strategy.lrs:
        candidate = lr if len(strategy.lrs) > 1 else None  # its own checkpoint, so resume works mid-search
        run, net = train_seed(params, strategy.at_lr(lr), data, compute, seed, ranks, candidate)
        rows.append({"lr": lr, "best_val_top1": run.metrics["best_val_top1"], "best_epoch": run.metrics["best_epoch"]})
        if best is None or run.metrics["best_val_top1"] > best[0].metrics["best_val_top1"]:
            best = (run, net)
    return rows, *best


def train_seed(
    params: Params,
    strategy: StrategyConfig,
    data: PreparedData,
    compute: Compute,
    seed: int,
    ranks: Ranks,
    lr_candidate: float | None = None,
) -> tuple[SeedRun, StrategyNet]:
    """One seed's run: build, train (resuming its checkpoint), keep the best-validation weights, test them."""
    num_classes = len(data.class_names)
    net = build_network(strategy, params.model.head, num_classes, paths.PRETRAINED_PATH, seed)
    net = net.to(compute.device, memory_format=compute.memory_format)
    if params.compute.compile:
        net.compile()
    trainable, total = count_parameters(with_train_layers(net, strategy.train_layers))
    if ranks.is_main:
        lr_note = f" at lr {strategy.training.lr:g}" if lr_candidate is not None else ""
        print(
            f"train@{strategy.name} seed {seed}{lr_note}: {trainable:,} of {total:,} parameters train, "
            f"on {compute.describe()} x {ranks.world_size}",
            flush=True,
        )
    checkpoint_path = paths.checkpoint_path(strategy.name, seed, lr_candidate)
    checkpoints = EpochCheckpoints(checkpoint_path, checkpoint_key(params, strategy, seed))
    started = time.perf_counter()
    progress = fit(net, strategy, params, data, compute, checkpoints, seed, ranks)
    net.load_state_dict(progress.best_state)
    test_images = ImageBatches(data.split("test", compute.device), params.data.image_size, None, compute)
    test = evaluate(net, test_images, params.compute.eval_batch_size, num_classes, compute, ranks)
    metrics = final_metrics(test, progress, net, torch.from_numpy(data.fine_to_coarse))
    metrics["train_flops"] = training_flops(net, strategy, params, data, compute)
    metrics["lr"] = strategy.training.lr  # the chosen candidate; with phases, what phases without their own lr use
    # The widest phase's view: the parameters that trained at some point (every one of them, for full).
    net = with_train_layers(net, strategy.train_layers)
    metrics["trainable_params"], metrics["total_params"] = count_parameters(net)
    if ranks.is_main:
        print(
            f"train@{strategy.name} seed {seed}: best epoch {progress.best_epoch}, test top1 {test.top1:.4f} "
            f"(superclass {metrics['test_top1_coarse']:.4f}) top5 {test.top5:.4f} loss {test.loss:.4f}",
            flush=True,
        )
    timing = {
        "total_seconds": round(time.perf_counter() - started, 2),  # this process only, when resumed
        "epoch_seconds": [round(seconds, 2) for seconds in progress.epoch_seconds],
        # A run resumed after its last epoch trained nothing in this process.
        "train_images_per_second": round(progress.images_trained / progress.train_seconds, 1)
        if progress.train_seconds
        else 0.0,
    }
    return SeedRun(seed, metrics, progress.history, test.confusion, timing, test.top5_predictions), net


def write_seed_results(strategy_name: str, run: SeedRun, data: PreparedData) -> None:
    """results/<strategy>/seeds/seed_<n>/: that run's metrics, history, confusion counts and timing."""
    folder = paths.seed_dir(strategy_name, run.seed)
    write_json(folder / paths.METRICS_FILE, run.metrics)
    write_json(folder / paths.HISTORY_FILE, run.history)
    write_json(folder / paths.CONFUSION_FILE, confusion_record(data, [run]))
    write_json(folder / paths.TIMING_FILE, run.timing)
    write_predictions(strategy_name, run, data)


def write_predictions(strategy_name: str, run: SeedRun, data: PreparedData) -> None:
    """predictions/<strategy>/seed_<n>.npz: `top5` (N, 5) and `labels` (N,) int64 of the test set, in its order."""
    arrays = {"top5": run.top5_predictions.numpy(), "labels": data.test_labels.astype("int64")}
    save_npz(paths.predictions_path(strategy_name, run.seed), arrays)


def training_flops(
    net: StrategyNet, strategy: StrategyConfig, params: Params, data: PreparedData, compute: Compute
) -> int:
    """metrics.json's train_flops: every training step and validation pass of one seed's run, summed over phases.

    Each phase counts with its own trainable blocks, feature-caching decision, batch size and epochs (stages/flops.py).
    """
    train_images = ImageBatches(data.split("train", compute.device), params.data.image_size, None, compute)
    total = 0
    for phase in strategy.run_phases():
        phase_net = with_train_layers(net, phase.train_layers)
        batches_kind = "features" if caches_features(phase_net, train_images, strategy.augment) else "images"
        total += flops_per_training_run(
            phase_net,
            batches_kind,
            params.data.image_size,
            phase.training.batch_size,
            len(data.train_labels),
            len(data.val_labels),
            phase.training.epochs,
        )
    return total


def confusion_record(data: PreparedData, runs: list[SeedRun]) -> dict:
    """confusion.json: test-set counts[actual][predicted] summed over the runs, with the names to read them by."""
    return {
        "seeds": [run.seed for run in runs],
        "class_names": list(data.class_names),
        "coarse_class_names": list(data.coarse_class_names),
        "fine_to_coarse": data.fine_to_coarse.tolist(),
        "counts": sum(run.confusion for run in runs).tolist(),
    }


def combined_timing(runs: list[SeedRun], total_seconds: float, compute: Compute) -> dict:
    """timing.json: the whole stage's seconds, and per seed, so the cost of one more seed is plain."""
    seed_seconds = [run.timing["total_seconds"] for run in runs]
    return {
        "total_seconds": round(total_seconds, 2),  # this process only, when resumed
        "seconds_per_seed": round(sum(seed_seconds) / len(runs), 2),
        "seed_seconds": seed_seconds,
        "train_images_per_second": round(sum(run.timing["train_images_per_second"] for run in runs) / len(runs), 1),
        "device": compute.describe(),
    }


def checkpoint_key(params: Params, strategy: StrategyConfig, seed: int) -> str:
    """What a checkpoint must match to be resumed: resolved config, the run's seed, input files, the stage's code."""
    inputs = [paths.PREPARED_PATH] + ([paths.PRETRAINED_PATH] if strategy.pretrained else [])
    code = [Path(module.__file__) for name, module in sorted(sys.modules.items()) if name.startswith("stages.")]
    return run_key({**resolved_config(params, strategy), "run_seed": seed}, inputs, code)


def raise_keyboard_interrupt(signal_number: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so both end the same way."""
    raise KeyboardInterrupt


def main() -> None:
    """Command line: python -m stages.train <strategy>."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategy", help="a key of `strategies` in params.yaml, e.g. shallow, deep or scratch")
    strategy_name = parser.parse_args().strategy
    compute = load_params().compute
    if compute.nproc > 1 and "WORLD_SIZE" not in os.environ:
        resolve_compute(compute)  # settles precision 'auto' once, before the ranks start, so all read one choice
        relaunch_under_torchrun(compute.nproc, [strategy_name])
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        run(strategy_name)
    except KeyboardInterrupt:
        # The epoch in progress is dropped; completed epochs are in the checkpoint, written atomically.
        print(
            f"train@{strategy_name}: interrupted; no results were written. Completed epochs are kept in "
            f"{paths.checkpoint_dir(strategy_name)}/: run the same dvc command again to resume from there",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    run_stage(main)
