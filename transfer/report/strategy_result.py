"""Each strategy's results read back from results/<strategy>/, checked to hold what the report needs."""

import json
from dataclasses import dataclass
from pathlib import Path

from transfer import paths
from transfer.aggregate import SPREAD_SUFFIXES
from transfer.config import StrategyConfig
from transfer.errors import UserError
from transfer.report.layout import EPOCH_FIGURES, table_scores, test_accuracies


@dataclass(frozen=True)
class StrategyResult:
    strategy: StrategyConfig
    history: list[dict]  # rows of history.json
    metrics: dict  # metrics.json
    confusion: dict  # confusion.json
    timing: dict  # timing.json
    provenance: dict  # provenance.json

    @property
    def has_superclasses(self) -> bool:
        """Whether the dataset groups classes into superclasses (CIFAR-100 does; its fine_to_coarse has no -1)."""
        return any(coarse >= 0 for coarse in self.confusion["fine_to_coarse"])


def have_superclasses(results: list[StrategyResult]) -> bool:
    """Whether every result's dataset has superclasses (all strategies share one dataset)."""
    return all(result.has_superclasses for result in results)


def read_json(path: Path) -> object:
    """Parsed JSON at path, or a UserError naming the stage that writes it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run the train stages first: dvc repro") from None


def require_keys(row: dict, keys: list[str], path: Path) -> None:
    """UserError naming the first key row lacks: results written by an older train stage."""
    for key in keys:
        if key not in row:
            raise UserError(
                f"{path} has no {key!r}; it predates this plots stage: rerun the train stages with dvc repro"
            )


def load_result(strategy: StrategyConfig) -> StrategyResult:
    """One strategy's outputs from results/<strategy>/."""
    name = strategy.name
    result = StrategyResult(
        strategy,
        read_json(paths.history_path(name)),
        read_json(paths.metrics_path(name)),
        read_json(paths.confusion_path(name)),
        read_json(paths.timing_path(name)),
        read_json(paths.provenance_path(name)),
    )
    band_columns = [column + suffix for column in EPOCH_FIGURES for suffix in ("", *SPREAD_SUFFIXES)]
    for row in result.history:
        require_keys(row, band_columns, paths.history_path(name))
    require_keys(result.confusion, ["class_names", "fine_to_coarse", "counts", "seeds"], paths.confusion_path(name))
    has_superclasses = result.has_superclasses
    scores = [*test_accuracies(has_superclasses), *table_scores(has_superclasses), "best_epoch"]
    require_keys(
        result.metrics,
        [
            *scores,
            *(f"{key}_std" for key in scores),
            *("trainable_params", "num_seeds", "train_flops", "train_flops_by_epoch", "tuning_flops", "lr_candidates"),
        ],
        paths.metrics_path(name),
    )
    require_keys(result.timing, ["seconds_per_seed", "tuning_seconds", "device"], paths.timing_path(name))
    require_keys(result.provenance, ["model_seed", "versions", "device"], paths.provenance_path(name))
    return result
