"""What is timed: the project's own training path, with the train stage's process-wide settings, and the baselines.

Every contender is built and warmed up here, once; measurement.measure then times it. all_contenders
returns them keyed by ContenderKey, in the order they are timed.
"""

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmarks import keys
from benchmarks.baselines import bare_contender, loader_contender
from benchmarks.keys import DEEP, PRECISION_MODES, SCRATCH, SHALLOW, ContenderKey
from benchmarks.measurement import WARMUP_STEPS, Contender
from benchmarks.workload import Bench, image_batches, run_context
from transfer.compute.device import Compute, make_deterministic
from transfer.config import StrategyConfig
from transfer.models.network import build_network
from transfer.training.batches import FeatureBatches, ImageBatches, cache_features, training_batches
from transfer.training.prepared_data import epoch_generator, shuffled_batches
from transfer.training.recipe import PhasePlan, build_optimizer, train_one_epoch

# ---------------------------------------------------------------------------------------------
# The train stage's process-wide settings


@contextmanager
def stage_settings() -> Iterator[None]:
    """Deterministic kernels as stages.train sets them, for the project's contenders only; restored after."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    make_deterministic()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def in_stage_settings(contender: Contender) -> Contender:
    """contender, run under stage_settings."""

    def run() -> int:
        with stage_settings():
            return contender()

    return run


# ---------------------------------------------------------------------------------------------
# The project's epochs


class StrategyTrainer:
    """A strategy's network and optimizer as the train stage builds them, trained one epoch at a time."""

    def __init__(self, bench: Bench, strategy: StrategyConfig, compute: Compute):
        self.run = run_context(bench, strategy, compute)
        # The first phase alone, at the bench's batch size: train_one_epoch reads its batch size from the plan.
        phase = strategy.run_phases()[0]
        phase = dataclasses.replace(phase, training=dataclasses.replace(phase.training, batch_size=bench.batch_size))
        self.plan = PhasePlan(None, phase, first_epoch=1, total_epochs=1)
        net = build_network(strategy, bench.params.model.head, self.run.num_classes, bench.pretrained_path, bench.seed)
        self.net = net.to(compute.device, memory_format=compute.memory_format)
        self.optimizer = build_optimizer(self.net, phase.training)

    def epoch(self, batches: ImageBatches | FeatureBatches, epoch: int) -> int:
        """One train_one_epoch over batches, drawing from epoch's generator; returns images seen."""
        return train_one_epoch(self.net, self.optimizer, batches, self.run, self.plan, epoch)[2]


def epoch_contender(bench: Bench, strategy_name: str, compute: Compute | None = None) -> Contender:
    """train_one_epoch for the strategy over augmented ImageBatches, warmed up (in compute, else the bench's)."""
    compute = compute or bench.compute
    trainer = StrategyTrainer(bench, bench.params.strategy_named(strategy_name), compute)
    batches = image_batches(bench, compute, augmented=True)
    trainer.epoch(image_batches(bench, compute, augmented=True, num_images=WARMUP_STEPS * bench.batch_size), epoch=0)
    return lambda: trainer.epoch(batches, epoch=1)


def precision_contenders(bench: Bench) -> dict[ContenderKey, Contender]:
    """A warmed-up epoch of scratch and of deep in every precision mode."""
    return {
        keys.precision_epoch(strategy, mode): epoch_contender(bench, strategy, mode.on(bench.compute.device))
        for strategy in (SCRATCH, DEEP)
        for mode in PRECISION_MODES
    }


def data_path_contender(bench: Bench) -> Contender:
    """ImageBatches.inputs with augmentation over one epoch's shuffled batches, nothing else."""
    batches = image_batches(bench, bench.compute, augmented=True)
    device = bench.compute.device

    def epoch() -> int:
        """Network inputs of one epoch's shuffled, augmented batches; returns images made."""
        generator = epoch_generator(bench.seed, 1, device)
        indices_list = shuffled_batches(len(batches), bench.batch_size, generator)
        for indices in indices_list:
            batches.inputs(indices, generator)
        return sum(len(indices) for indices in indices_list)

    warmup_generator = epoch_generator(bench.seed, 0, device)
    for indices in shuffled_batches(len(batches), bench.batch_size, warmup_generator)[:WARMUP_STEPS]:
        batches.inputs(indices, warmup_generator)
    return epoch


def cached_shallow_contenders(bench: Bench) -> tuple[Contender, Contender]:
    """(feature caching via training_batches, one shallow epoch on the cached features), both warmed up."""
    strategy = dataclasses.replace(bench.params.strategy_named(SHALLOW), augment=False)
    trainer = StrategyTrainer(bench, strategy, bench.compute)
    images = image_batches(bench, bench.compute, augmented=False)
    cache_batch_size = bench.params.compute.eval_batch_size  # what transfer.training.recipe.phase_batches passes
    warmup_images = image_batches(bench, bench.compute, augmented=False, num_images=WARMUP_STEPS * cache_batch_size)
    cache_features(trainer.net, warmup_images, cache_batch_size)
    features = training_batches(trainer.net, images, strategy.augment, cache_batch_size)
    assert isinstance(features, FeatureBatches), "shallow without augmentation should train on cached features"

    def cache() -> int:
        """Cache every image's frozen features afresh; returns images cached."""
        return len(training_batches(trainer.net, images, strategy.augment, cache_batch_size))

    def epoch() -> int:
        """One shallow epoch on the cached features; returns images seen."""
        return trainer.epoch(features, epoch=1)

    epoch()  # warm-up: the optimizer's state and the head's kernels
    return cache, epoch


def project_contenders(bench: Bench) -> dict[ContenderKey, Contender]:
    """The project's contenders, built and warmed up under stage_settings and timed under them, in timing order."""
    with stage_settings():
        cache, cached_epoch = cached_shallow_contenders(bench)
        built = {
            keys.SCRATCH_EPOCH: epoch_contender(bench, SCRATCH),
            keys.DATA_PATH: data_path_contender(bench),
            keys.SHALLOW_EPOCH: epoch_contender(bench, SHALLOW),
            keys.FEATURE_CACHE: cache,
            keys.CACHED_EPOCH: cached_epoch,
            **precision_contenders(bench),
        }
    return {key: in_stage_settings(contender) for key, contender in built.items()}


def all_contenders(bench: Bench, workers: list[int]) -> dict[ContenderKey, Contender]:
    """Every contender, in timing order: bare beside scratch (least drift between them), the loaders last."""
    project = project_contenders(bench)
    baselines = {keys.BARE: bare_contender(bench)}
    loaders = {keys.loader(count): loader_contender(bench, count) for count in workers}
    return baselines | project | loaders
