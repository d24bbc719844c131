"""Combining one strategy's runs over seeds: means, sample std, per-epoch min and max."""

import statistics

import pytest

from transfer.aggregate import SPREAD_COLUMNS, combine_histories, combine_metrics


def run_metrics(test_top1: float, best_epoch: int) -> dict:
    """One seed's metrics.json as the train stage writes it."""
    return {"test_top1": test_top1, "best_epoch": best_epoch, "trainable_params": 51300, "total_params": 11227812}


def epoch_row(epoch: int, value: float) -> dict:
    """One history row whose every varying column holds value."""
    return {"epoch": epoch, "lr": 0.05 / epoch, **{column: value for column in SPREAD_COLUMNS}}


def test_metrics_are_mean_and_sample_std_and_sizes_pass_through():
    combined = combine_metrics([run_metrics(0.30, 8), run_metrics(0.34, 10), run_metrics(0.35, 9)])
    assert combined["test_top1"] == pytest.approx(0.33, abs=1e-6)
    assert combined["test_top1_std"] == pytest.approx(statistics.stdev([0.30, 0.34, 0.35]), abs=1e-6)  # n - 1
    assert combined["best_epoch"] == 9.0 and combined["best_epoch_std"] == 1.0
    assert combined["trainable_params"] == 51300 and "trainable_params_std" not in combined
    assert combined["num_seeds"] == 3


def test_one_seed_has_zero_std_and_its_own_values():
    combined = combine_metrics([run_metrics(0.3125, 7)])
    assert combined == {
        "test_top1": 0.3125,
        "test_top1_std": 0.0,
        "best_epoch": 7,
        "best_epoch_std": 0.0,
        "trainable_params": 51300,
        "total_params": 11227812,
        "num_seeds": 1,
    }


def test_history_rows_hold_mean_min_and_max_per_epoch():
    runs = [
        [epoch_row(1, 4.0), epoch_row(2, 3.0)],
        [epoch_row(1, 5.0), epoch_row(2, 2.0)],
        [epoch_row(1, 6.0), epoch_row(2, 2.5)],
    ]
    rows = combine_histories(runs)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[1]["lr"] == 0.025
    for column in SPREAD_COLUMNS:
        assert (rows[0][f"{column}_min"], rows[0][column], rows[0][f"{column}_max"]) == (4.0, 5.0, 6.0)
        assert (rows[1][f"{column}_min"], rows[1][column], rows[1][f"{column}_max"]) == (2.0, 2.5, 3.0)


def test_runs_of_different_lengths_are_a_bug_not_a_shorter_history():
    with pytest.raises(ValueError):
        combine_histories([[epoch_row(1, 1.0), epoch_row(2, 1.0)], [epoch_row(1, 1.0)]])


def test_train_flops_depend_on_the_strategy_alone_and_have_no_std():
    per_seed = [{"test_top1": top1, "train_flops": 3 * 10**13} for top1 in (0.5, 0.6)]
    combined = combine_metrics(per_seed)
    assert combined["train_flops"] == 3 * 10**13 and isinstance(combined["train_flops"], int)
    assert "train_flops_std" not in combined
