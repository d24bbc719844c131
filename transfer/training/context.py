"""RunContext: what every step of one training run needs, passed as one value instead of six arguments."""

import dataclasses
from dataclasses import dataclass

from transfer import paths
from transfer.compute.device import Compute
from transfer.compute.distributed import Ranks
from transfer.config import LrCandidate, Params, StrategyConfig
from transfer.training.augment import Normalization
from transfer.training.batches import ImageBatches
from transfer.training.prepared_data import PreparedData


@dataclass(frozen=True)
class RunContext:
    """One seed's training of one strategy: the params, the strategy as it trains, the data, where it runs.

    `strategy` is the strategy at the lr this run trains with (see StrategyConfig.at_candidate); a context
    for another seed or lr is a copy made with for_seed / at_candidate, never a mutation.
    """

    params: Params
    strategy: StrategyConfig
    data: PreparedData
    compute: Compute
    seed: int
    ranks: Ranks = Ranks()
    # A smaller training set's run (data.train_sizes): its images per class, and the name that stands for the
    # strategy's in its paths (paths.subset_run_name). 0 and "": the whole training split, train@<strategy>.
    train_per_class: int = 0
    run_name: str = ""
    passes_per_epoch: int = 1  # passes over the training set that make one epoch: the budget rule (subset.py)

    @property
    def output_name(self) -> str:
        """What names this run's files in transfer/paths.py: the strategy, or sizes/<n>/<strategy>."""
        return self.run_name or self.strategy.name

    def for_seed(self, seed: int) -> "RunContext":
        """The same run with another seed."""
        return dataclasses.replace(self, seed=seed)

    def at_candidate(self, candidate: LrCandidate) -> "RunContext":
        """The same run with the strategy at one learning-rate candidate."""
        return dataclasses.replace(self, strategy=self.strategy.at_candidate(candidate))

    @property
    def num_classes(self) -> int:
        """Classes of the prepared data."""
        return len(self.data.class_names)

    @property
    def label(self) -> str:
        """How progress lines name this run: 'train@<strategy> seed <n>' (train_subset@... for a smaller set)."""
        return f"{self.stage_name} seed {self.seed}"

    @property
    def stage_name(self) -> str:
        """The DVC stage this run belongs to: train@<strategy>, or train_subset@<strategy>-<n> (dvc.yaml)."""
        return paths.train_stage_name(self.strategy.name, self.train_per_class)

    @property
    def normalization(self) -> Normalization:
        """The input every strategy's network sees: data.image_size and ImageNet statistics, from the stored images."""
        return Normalization(self.params.data.image_size, stored_size=self.data.stored_size)

    def images(self, split: str, augmented: bool = False) -> ImageBatches:
        """Batches of a split ('train', 'val', 'test') on the device; augmented=True applies data.augment."""
        augmentation = self.params.data.augment if augmented else None
        return ImageBatches(self.data.split(split, self.compute.device), self.normalization, augmentation, self.compute)
