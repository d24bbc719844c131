"""The data files DVC renders (plots/epochs.json, final_scores.json, confusion.json): every strategy in each."""

import json
from pathlib import Path

from transfer import paths
from transfer.atomic import atomic_path, write_json
from transfer.errors import UserError
from transfer.report.layout import CONFUSION_PATH, EPOCHS_PATH, FINAL_SCORES_PATH, test_accuracies
from transfer.report.strategy_result import StrategyResult, have_superclasses


def final_score_rows(results: list[StrategyResult]) -> list[dict]:
    """One row per (strategy, test metric): a long table DVC's bar template draws directly."""
    return [
        {
            "strategy": result.strategy.name,
            "metric": label,
            "bar": f"{result.strategy.name} {label}",
            "accuracy": result.metrics[key],
            "accuracy_std": result.metrics[f"{key}_std"],
        }
        for result in results
        for key, label in test_accuracies(have_superclasses(results)).items()
    ]


# History columns only some strategies write, and the value a row without one takes. DVC draws no datapoint
# of a plot whose rows differ in keys (`dvc plots show` fails with a TypeError), so every row carries each.
OPTIONAL_HISTORY_COLUMNS = {"phase": 1}  # a strategy without phases trains in one phase


def epoch_rows(results: list[StrategyResult]) -> list[dict]:
    """Every strategy's history rows, each led by its `strategy`, all with the same keys in the same order.

    Each row also carries the training FLOPs spent by the end of its epoch, the x of the compute plot.
    """
    rows = [
        {"strategy": result.strategy.name, **OPTIONAL_HISTORY_COLUMNS, **row, "train_flops_spent": spent}
        for result in results
        for row, spent in zip(result.history, result.metrics["train_flops_by_epoch"], strict=True)
    ]
    require_same_keys(rows)
    return rows


def require_same_keys(rows: list[dict]) -> None:
    """UserError naming a history with a column another lacks (results of different train stages): it would not draw."""
    keys = {key for row in rows for key in row}
    for row in rows:
        if missing := sorted(keys - row.keys()):
            owner = next(other["strategy"] for other in rows if missing[0] in other)
            raise UserError(
                f"{paths.history_path(row['strategy'])} has no column {missing[0]!r}, which "
                f"{paths.history_path(owner)} has; rerun the train stages with dvc repro"
            )


def confusion_rows(strategy: str, confusion: dict) -> list[dict]:
    """One {strategy, actual, predicted} row per test prediction: the long form the confusion template counts."""
    names = confusion["class_names"]
    return [
        {"strategy": strategy, "actual": names[actual], "predicted": names[predicted]}
        for actual, row in enumerate(confusion["counts"])
        for predicted, count in enumerate(row)
        for _ in range(count)
    ]


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write rows as a JSON list, one compact row a line: tens of thousands of rows stay small in git."""
    with atomic_path(path) as temp_path:
        temp_path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n")


def write_data(results: list[StrategyResult]) -> None:
    """The files DVC renders, each holding every strategy: per-epoch rows, final scores, confusion rows."""
    write_json(EPOCHS_PATH, epoch_rows(results))
    write_json(FINAL_SCORES_PATH, final_score_rows(results))
    write_rows(
        CONFUSION_PATH,
        [row for result in results for row in confusion_rows(result.strategy.name, result.confusion)],
    )
