"""Combine one strategy's runs with several seeds: the mean and spread of every score and curve."""

import statistics

# history.json columns that vary between seeds; each gets _min and _max beside its mean.
SPREAD_COLUMNS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
SPREAD_SUFFIXES = ("_min", "_max")  # the lowest and highest seed; .dvc/plots/linear_band.json draws the band from them
# Metrics that depend on the strategy alone: kept once, without a _std.
SAME_FOR_EVERY_SEED = ("trainable_params", "total_params", "train_flops", "train_flops_by_epoch", "lr")


def combine_metrics(per_seed: list[dict]) -> dict:
    """metrics.json over seeds: each figure's mean, then `<name>_std` (sample std; 0 for one seed)."""
    combined = {}
    for key in per_seed[0]:
        values = [metrics[key] for metrics in per_seed]
        if key in SAME_FOR_EVERY_SEED:
            combined[key] = values[0]
            continue
        combined[key] = round(statistics.fmean(values), 6)
        combined[f"{key}_std"] = round(statistics.stdev(values), 6) if len(values) > 1 else 0.0
    combined["num_seeds"] = len(per_seed)
    return combined


def combine_histories(per_seed: list[list[dict]]) -> list[dict]:
    """history.json over seeds: per epoch, each column's mean with its _min and _max."""
    rows = []
    for epoch_rows in zip(*per_seed, strict=True):
        first = epoch_rows[0]
        row = {"epoch": first["epoch"], "lr": first["lr"]}  # the schedule is the same for every seed
        if "phase" in first:  # only strategies with phases have the column
            row["phase"] = first["phase"]
        for column in SPREAD_COLUMNS:
            values = [epoch_row[column] for epoch_row in epoch_rows]
            lowest, highest = (column + suffix for suffix in SPREAD_SUFFIXES)
            row.update({column: statistics.fmean(values), lowest: min(values), highest: max(values)})
        rows.append(row)
    return rows
