"""The data files DVC renders (plots/epochs.json, final_scores.json, confusion.json): every strategy in each."""

import json
from pathlib import Path

from transfer.atomic import atomic_path, write_json
from transfer.report.layout import CONFUSION_PATH, EPOCHS_PATH, FINAL_SCORES_PATH, TEST_ACCURACIES
from transfer.report.results import StrategyResult


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
        for key, label in TEST_ACCURACIES.items()
    ]


def epoch_rows(results: list[StrategyResult]) -> list[dict]:
    """Every strategy's history rows, each led by its `strategy`; extra history columns pass through."""
    return [{"strategy": result.strategy.name, **row} for result in results for row in result.history]


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
