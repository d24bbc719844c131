"""Building blocks for tests that call the training recipe directly: a RunContext and a one-phase plan."""

import dataclasses

import numpy as np
import torch

from transfer.compute.device import Compute
from transfer.config import Params, StrategyConfig
from transfer.training.context import RunContext
from transfer.training.prepared_data import PreparedData
from transfer.training.recipe import PhasePlan

FP32_CPU = Compute(device=torch.device("cpu"), amp_dtype=None, channels_last=False)


def class_names_only(num_classes: int) -> PreparedData:
    """PreparedData with no images: enough for a run whose batches a test builds itself."""
    empty_images, empty_labels = np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
    return PreparedData(
        *(empty_images, empty_labels) * 3,
        class_names=tuple(f"class_{index}" for index in range(num_classes)),
        fine_to_coarse=np.zeros(num_classes, np.int64),
        coarse_class_names=("superclass_0",),
    )


def run_context(
    params: Params, strategy: StrategyConfig | str, data: PreparedData, compute: Compute = FP32_CPU, seed: int = 0
) -> RunContext:
    """A one-process RunContext for a strategy (given or named in params)."""
    if isinstance(strategy, str):
        strategy = params.strategy_named(strategy)
    return RunContext(params, strategy, data, compute, seed)


def one_phase_plan(run: RunContext, batch_size: int, epochs: int = 1) -> PhasePlan:
    """The plan of a single phase training the strategy's layers with batch_size, epochs 1..epochs."""
    phase = run.strategy.run_phases()[0]
    training = dataclasses.replace(phase.training, batch_size=batch_size, epochs=epochs)
    return PhasePlan(None, dataclasses.replace(phase, training=training), first_epoch=1, total_epochs=epochs)
