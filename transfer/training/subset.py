"""A smaller training set (data.train_sizes) and the training budget that suits it.

The subset: `per_class` images of each class, drawn from the training split only (validation and test
never change). One seeded permutation of the training split (data.split_seed) orders every class's
images, and a class contributes the first `per_class` of its own in that order, so the subsets are
nested: the 10 images of a class are among its 100. The kept images stay in their training-split order.

The budget rule (data.subset_min_steps): a smaller set trains its strategy's schedule as written, unless
that makes fewer than subset_min_steps optimizer steps; then each epoch is several passes over the set (a
fresh permutation each), the smallest whole number of passes that reaches the floor. An epoch-count budget
shrinks with the data (10 images a class of CIFAR-100 is 7 steps an epoch at batch 128: 70 steps in 10
epochs, too few to leave the initialisation), so each size would measure under-training rather than data;
a floor of optimizer steps is BiT's HyperRule's answer for small sets (Kolesnikov et al., ECCV 2020: 500
steps below 20k images). Lengthening the epoch rather than adding epochs keeps everything else of the
schedule as at full size: the same epochs and phases, the same per-epoch lr schedule, and as many
validation passes (which would otherwise dominate: 80 epochs would validate 80 times). Above the floor,
the schedule and the lr search (strategy.lr_factors) are the full run's.
"""

import dataclasses
import math

import numpy as np

from transfer.config import StrategyConfig
from transfer.errors import UserError
from transfer.training.prepared_data import PreparedData

SUBSET_STREAM = 1  # apart from the validation split's draw (splitting.py), which data.split_seed also seeds


def subset_indices(labels: np.ndarray, class_names: tuple[str, ...], per_class: int, split_seed: int) -> np.ndarray:
    """Ascending indices of `per_class` training images of every class; a UserError if a class has fewer."""
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)  # a folder's class with no training image has nothing to draw
    smallest = int(present[np.argmin(counts[present])])
    if per_class > counts[smallest]:
        raise UserError(
            f"data.train_sizes: {per_class} images per class is more than class {class_names[smallest]!r} has in "
            f"the training split ({counts[smallest]}); use at most {counts[smallest]}"
        )
    order = np.random.default_rng(np.random.SeedSequence([split_seed, SUBSET_STREAM])).permutation(len(labels))
    kept = [order[labels[order] == label][:per_class] for label in present]
    return np.sort(np.concatenate(kept))


def training_subset(data: PreparedData, per_class: int, split_seed: int) -> PreparedData:
    """data with its training split cut to `per_class` images of each class (see the module docstring)."""
    kept = subset_indices(data.train_labels, data.class_names, per_class, split_seed)
    return dataclasses.replace(data, train_images=data.train_images[kept], train_labels=data.train_labels[kept])


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimizer steps of one epoch: full batches only, or one batch of everything (prepared_data.py)."""
    return max(1, num_images // batch_size)


def schedule_steps(strategy: StrategyConfig, num_images: int) -> int:
    """Optimizer steps of the strategy's whole schedule on num_images training images."""
    phases = strategy.run_phases()
    return sum(phase.training.epochs * steps_per_epoch(num_images, phase.training.batch_size) for phase in phases)


def passes_per_epoch(strategy: StrategyConfig, num_images: int, min_steps: int) -> int:
    """The budget rule: the fewest passes per epoch (at least 1) that make the schedule min_steps optimizer steps."""
    return max(1, math.ceil(min_steps / schedule_steps(strategy, num_images)))
