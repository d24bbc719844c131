"""A strategy's training runs: the lr search on the first seed, one run per seed, and each run's test scores.

recipe.py says how a network trains; this module says which runs a strategy makes and what each
one reports: the learning-rate candidates are tried on the first seed and chosen on validation
top-1, every further seed trains at the chosen rate, and each run's best-validation weights are
scored on the test set.
"""

import dataclasses
import sys
import time
from pathlib import Path

import torch

from transfer import paths
from transfer.config import LrCandidate, Params, StrategyConfig
from transfer.models.network import StrategyNet, build_network, count_parameters, with_train_layers
from transfer.training.batches import caches_features
from transfer.training.checkpoint import EpochCheckpoints, FitProgress, run_key
from transfer.training.context import RunContext
from transfer.training.evaluation import Scores, superclass_top1
from transfer.training.flops import RunShape, cumulative_flops_by_epoch
from transfer.training.recipe import fit, score_network

# Packages whose source is hashed into a checkpoint's key: code that can change a result.
PROJECT_PACKAGES = ("stages", "transfer")


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
class LrSearch:
    """The lr search on the first seed: one lr_search.json row per candidate, and the winner's run."""

    rows: list[dict]  # lr_search.json
    chosen: LrCandidate
    run: SeedRun
    net: StrategyNet

    @property
    def tuning_flops(self) -> int:
        """FLOPs of the candidates' runs beyond the chosen one (which is the first seed's run, reused)."""
        return sum(row["train_flops"] for row in self.rows if not row["chosen"])

    @property
    def tuning_seconds(self) -> float:
        """Seconds of those runs, on the machine they ran on."""
        return round(sum(row["seconds"] for row in self.rows if not row["chosen"]), 2)


@dataclasses.dataclass(frozen=True)
class StrategyRuns:
    """Every run of one strategy: the lr search, the chosen strategy, each seed's run, the saved model."""

    search: LrSearch
    chosen: StrategyConfig  # the strategy at the chosen lr
    runs: list[SeedRun]  # one per seed, in the order of strategy.seeds
    model_run: SeedRun  # the seed whose weights become models/<strategy>.pt
    model_net: StrategyNet


def train_strategy(run: RunContext) -> StrategyRuns:
    """Choose the lr on the first seed, then train and test once per seed (run.seed is ignored)."""
    seeds = run.strategy.training.seeds
    search = search_lr(run.for_seed(seeds[0]))
    chosen = run.at_candidate(search.chosen)
    runs: list[SeedRun] = []
    model_run, model_net = None, None
    for seed in seeds:
        # The first seed's run at the chosen lr is reused, not repeated.
        seed_run, net = (search.run, search.net) if seed == seeds[0] else train_seed(chosen.for_seed(seed))
        # The saved model is the seed with the best validation top-1 (the first on a tie): chosen
        # without looking at the test set, like the epoch within a run.
        if model_run is None or seed_run.metrics["best_val_top1"] > model_run.metrics["best_val_top1"]:
            model_run, model_net = seed_run, net
        runs.append(seed_run)
    return StrategyRuns(search, chosen.strategy, runs, model_run, model_net)


def search_lr(run: RunContext) -> LrSearch:
    """Train the run's seed once per lr candidate; the run with the best validation top-1 wins.

    Ties go to the first candidate listed; the test set plays no part. One candidate is one plain run.
    """
    rows, best = [], None
    candidates = run.strategy.lr_candidates
    for candidate in candidates:
        # Its own checkpoint when searching, so resume works mid-search.
        seed_run, net = train_seed(run.at_candidate(candidate), candidate.lr if len(candidates) > 1 else None)
        metrics = seed_run.metrics
        rows.append(
            {
                "lr": candidate.lr,
                "factor": candidate.factor,
                "best_val_top1": metrics["best_val_top1"],
                "best_epoch": metrics["best_epoch"],
                "train_flops": metrics["train_flops"],
                "seconds": seed_run.timing["total_seconds"],
            }
        )
        if best is None or metrics["best_val_top1"] > best[1].metrics["best_val_top1"]:
            best = (candidate, seed_run, net)
    for row, candidate in zip(rows, candidates, strict=True):
        row["chosen"] = candidate == best[0]
    return LrSearch(rows, *best)


def train_seed(run: RunContext, lr_candidate: float | None = None) -> tuple[SeedRun, StrategyNet]:
    """One seed's run: build, train (resuming its checkpoint), keep the best-validation weights, test them."""
    strategy = run.strategy
    model = run.params.model
    net = build_network(strategy, model.head, run.num_classes, paths.PRETRAINED_PATH, run.seed, model.arch)
    net = net.to(run.compute.device, memory_format=run.compute.memory_format)
    if run.params.compute.compile:
        net.compile()
    trainable, total = count_parameters(with_train_layers(net, strategy.train_layers))
    if run.ranks.is_main:
        lr_note = f" at lr {strategy.training.lr:g}" if lr_candidate is not None else ""
        print(
            f"{run.label}{lr_note}: {trainable:,} of {total:,} parameters train, "
            f"on {run.compute.describe()} x {run.ranks.world_size}",
            flush=True,
        )
    checkpoint_path = paths.checkpoint_path(run.output_name, run.seed, lr_candidate)
    checkpoints = EpochCheckpoints(checkpoint_path, checkpoint_key(run))
    started = time.perf_counter()
    progress = fit(net, run, checkpoints)
    if run.ranks.is_main:
        checkpoints.keep_finished(progress)  # until the strategy ends: a finished seed needs no optimizer state
    net.load_state_dict(progress.best_state)
    test = score_network(net, run.images("test"), run)
    metrics = final_metrics(test, progress, net, torch.from_numpy(run.data.fine_to_coarse))
    metrics["train_flops_by_epoch"] = training_flops_by_epoch(net, run)
    metrics["train_flops"] = metrics["train_flops_by_epoch"][-1]
    metrics["lr"] = strategy.training.lr  # the chosen candidate; with phases, what phases without their own lr use
    # The widest phase's view: the parameters that trained at some point (every one of them, for full).
    net = with_train_layers(net, strategy.train_layers)
    metrics["trainable_params"], metrics["total_params"] = count_parameters(net)
    if run.ranks.is_main:
        superclass = f" (superclass {metrics['test_top1_coarse']:.4f})" if "test_top1_coarse" in metrics else ""
        print(
            f"{run.label}: best epoch {progress.best_epoch}, test top1 {test.top1:.4f}"
            f"{superclass} top5 {test.top5:.4f} loss {test.loss:.4f}",
            flush=True,
        )
    timing = seed_timing(progress, time.perf_counter() - started)
    return SeedRun(run.seed, metrics, progress.history, test.confusion, timing, test.top5_predictions), net


def final_metrics(test: Scores, progress: FitProgress, net: StrategyNet, fine_to_coarse: torch.Tensor) -> dict:
    """One seed's metrics.json: test scores of its best-validation weights, and the network's size."""
    trainable, total = count_parameters(net)
    has_superclasses = bool((fine_to_coarse >= 0).any())
    return {
        "test_top1": round(test.top1, 6),
        # only where the dataset has superclasses (CIFAR-100; CIFAR-10 maps every class to -1)
        **({"test_top1_coarse": round(superclass_top1(test.confusion, fine_to_coarse), 6)} if has_superclasses else {}),
        "test_top5": round(test.top5, 6),
        "test_loss": round(test.loss, 6),
        "best_val_top1": round(progress.history[progress.best_epoch - 1]["val_top1"], 6),
        "best_epoch": progress.best_epoch,
        "trainable_params": trainable,
        "total_params": total,
    }


def seed_timing(progress: FitProgress, total_seconds: float) -> dict:
    """seeds/seed_<n>/timing.json: wall-clock seconds of this process, per epoch, and training throughput."""
    return {
        "total_seconds": round(total_seconds, 2),  # this process only, when resumed
        "epoch_seconds": [round(seconds, 2) for seconds in progress.epoch_seconds],
        # A run resumed after its last epoch trained nothing in this process.
        "train_images_per_second": round(progress.images_trained / progress.train_seconds, 1)
        if progress.train_seconds
        else 0.0,
    }


def training_flops_by_epoch(net: StrategyNet, run: RunContext) -> list[int]:
    """metrics.json's train_flops_by_epoch: the FLOPs of every training step and validation pass of one seed's run
    spent by the end of each epoch, counted on across phases (the last entry is train_flops).

    Each phase counts with its own trainable blocks, feature-caching decision, batch size and epochs (flops.py).
    """
    train_images = run.images("train")
    spent: list[int] = []
    for phase in run.strategy.run_phases():
        phase_net = with_train_layers(net, phase.train_layers)
        batches_kind = "features" if caches_features(phase_net, train_images, run.strategy.augment) else "images"
        shape = RunShape(
            batches_kind=batches_kind,
            image_size=run.params.data.image_size,
            batch_size=phase.training.batch_size,
            train_images=len(run.data.train_labels),
            val_images=len(run.data.val_labels),
            epochs=phase.training.epochs,
            passes_per_epoch=run.passes_per_epoch,
        )
        before = spent[-1] if spent else 0
        spent += [before + flops for flops in cumulative_flops_by_epoch(phase_net, shape)]
    return spent


def resolved_config(params: Params, strategy: StrategyConfig) -> dict:
    """The params the train stage declares in dvc.yaml, resolved for this strategy (stored beside the weights).

    Only declared keys: anything else could change without the stage rerunning and go stale.
    The data and backbone weights are pinned by their hashes in dvc.lock.
    """
    return {
        "strategy": dataclasses.asdict(strategy),
        "data": {"image_size": params.data.image_size, "augment": dataclasses.asdict(params.data.augment)},
        "model": {"arch": params.model.arch, "head": dataclasses.asdict(params.model.head)},
        "compute": dataclasses.asdict(params.compute),
    }


def project_code_files() -> list[Path]:
    """Source files of every loaded module of the project's packages (stages and the transfer library).

    By the module's spec name, so the stage run as `python -m stages.train` (loaded as __main__) counts too.
    """
    files = set()
    for key, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None else key
        if name.split(".")[0] in PROJECT_PACKAGES and getattr(module, "__file__", None):
            files.add(Path(module.__file__))
    return sorted(files)


def checkpoint_config(run: RunContext) -> dict:
    """The settings a checkpoint is keyed by: the resolved config, the run's seed and the compute actually used.

    compute.precision 'auto' resolves per machine (a cached measurement on CPUs): keying by the precision
    used, not by 'auto', keeps a resume from mixing fp32 and bf16 epochs.
    """
    config = {**resolved_config(run.params, run.strategy), "run_seed": run.seed, "compute_used": run.compute.record()}
    # A smaller training set's run: its draw and budget too (absent otherwise, so the whole split's keys still match).
    if run.train_per_class or run.passes_per_epoch != 1:
        config["subset"] = {
            "train_per_class": run.train_per_class,
            "split_seed": run.params.data.split_seed,
            "passes_per_epoch": run.passes_per_epoch,
        }
    return config


def checkpoint_key(run: RunContext) -> str:
    """What a checkpoint must match to be resumed: checkpoint_config, input files, the code."""
    inputs = [paths.PREPARED_PATH] + ([paths.PRETRAINED_PATH] if run.strategy.pretrained else [])
    return run_key(checkpoint_config(run), inputs, project_code_files())
