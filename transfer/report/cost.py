"""Accuracy against training cost, one row per strategy: plots/cost.json, its PNG and report.md's section.

train_flops (metrics.json, transfer/training/flops.py) is deterministic and comparable between machines;
train_seconds (timing.json's seconds_per_seed) is what one seed's run took on the machine it ran on.
tuning_flops and tuning_seconds are the lr search's other candidates (the chosen one is the first seed's run), so
a strategy tuned over more rates shows what its search cost.
"""

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from transfer import paths  # noqa: E402
from transfer.atomic import write_json  # noqa: E402
from transfer.report.convergence import (  # noqa: E402
    TARGET_FRACTION,
    convergence,
    convergence_target,
    draw_flops_figure,
)
from transfer.report.figures import save_figure, scale_flops_axis  # noqa: E402
from transfer.report.layout import FLOPS_FIGURE_PATH  # noqa: E402
from transfer.report.strategy_result import StrategyResult  # noqa: E402


def cost_row(result: StrategyResult, target: float) -> dict:
    """One row of cost.json from a strategy's metrics.json and timing.json, and when it reached the common target."""
    metrics, timing = result.metrics, result.timing
    reached = convergence(result, target)
    return {
        "strategy": result.strategy.name,
        "test_top1": metrics["test_top1"],
        "train_flops": metrics["train_flops"],  # one seed's run
        "tuning_flops": metrics["tuning_flops"],  # the lr search's runs beyond the chosen one; 0 without a search
        "lr_candidates": metrics["lr_candidates"],
        "train_seconds": timing["seconds_per_seed"],  # one seed's run, test pass included; machine-dependent
        "tuning_seconds": timing["tuning_seconds"],
        "trainable_params": metrics["trainable_params"],
        "target_val_top1": round(target, 6),  # the same in every row: TARGET_FRACTION of the best strategy's best
        "epoch_to_target": reached.epoch,  # null: not reached
        "train_flops_to_target": reached.train_flops,
    }


def draw_cost_figure(rows: list[dict]) -> plt.Figure:
    """Test top-1 against training FLOPs (log scale when they span a wide range), one labelled point per
    strategy; a searched strategy's hollow point and line show its cost with the lr search's runs added."""
    figure, axes = plt.subplots(figsize=(6, 4))
    labels_at: dict[int, int] = {}  # train_flops -> labels already placed there
    for row in rows:
        (point,) = axes.plot(row["train_flops"], row["test_top1"], "o", label=row["strategy"])
        if row["tuning_flops"]:
            searched = row["train_flops"] + row["tuning_flops"]
            axes.plot([row["train_flops"], searched], [row["test_top1"]] * 2, color=point.get_color(), linewidth=1)
            axes.plot(searched, row["test_top1"], "o", markerfacecolor="none", color=point.get_color())
        # Strategies of equal cost (full and scratch train the same network) get a line each, not one blur.
        stacked = labels_at.get(row["train_flops"], 0)
        labels_at[row["train_flops"]] = stacked + 1
        axes.annotate(
            row["strategy"],
            (row["train_flops"], row["test_top1"]),
            textcoords="offset points",
            xytext=(5, 5 - 12 * stacked),
        )
    scale_flops_axis(axes, [row["train_flops"] + extra for row in rows for extra in (0, row["tuning_flops"] or 0)])
    axes.set(
        title="Test top-1 against training compute",
        xlabel="training FLOPs (one seed; hollow: with the lr search's other runs)",
        ylabel="test top-1",
    )
    axes.grid(alpha=0.3, which="both")
    return figure


def reached(value: int | None, text: str) -> str:
    """A convergence cell: the value, or 'not reached'."""
    return "not reached" if value is None else text


def cost_section(rows: list[dict]) -> str:
    """report.md's section: the cost table and the figures of accuracy against compute."""
    target = rows[0]["target_val_top1"]
    lines = [
        "## Accuracy against cost\n",
        "Training FLOPs count every training step and validation pass of one seed's run "
        "(forward, and backward where gradients flow; cached frozen features counted once), from "
        "`torch.utils.flop_counter.FlopCounterMode`: the same on every machine. Seconds are one seed's run "
        "on the machine it ran on. The lr search columns are the other candidates' runs on the first seed "
        "(0 without a search). The target is the same for every strategy: "
        f"{TARGET_FRACTION:.0%} of the best strategy's best mean validation top-1, i.e. {target:.4f}.\n",
        "| strategy | test top-1 | training FLOPs | lr candidates | lr search FLOPs | seconds per seed "
        "| lr search seconds | trainable params | epoch to target | FLOPs to target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['strategy']} | {row['test_top1']:.4f} | {row['train_flops']:.3g} | {row['lr_candidates']} "
        f"| {row['tuning_flops']:.3g} | {row['train_seconds']:.1f} | {row['tuning_seconds']:.1f} "
        f"| {row['trainable_params']:,} | {reached(row['epoch_to_target'], str(row['epoch_to_target']))} "
        f"| {reached(row['train_flops_to_target'], format(row['train_flops_to_target'] or 0, '.3g'))} |"
        for row in rows
    ]
    cost_figure = paths.COST_FIGURE_PATH.relative_to(paths.PLOTS_DIR).as_posix()
    flops_figure = FLOPS_FIGURE_PATH.relative_to(paths.PLOTS_DIR).as_posix()
    return (
        "\n".join(lines)
        + f"\n\n![Test top-1 against training FLOPs]({cost_figure})\n"
        + f"\n![Validation top-1 against training FLOPs spent]({flops_figure})\n"
    )


def write_cost(results: list[StrategyResult]) -> tuple[list[dict], str]:
    """Write plots/cost.json and the two compute figures; return cost.json's rows and report.md's section."""
    target = convergence_target(results)
    rows = [cost_row(result, target) for result in results]
    write_json(paths.COST_PATH, rows)
    save_figure(draw_cost_figure(rows), paths.COST_FIGURE_PATH)
    save_figure(draw_flops_figure(results, target), FLOPS_FIGURE_PATH)
    return rows, cost_section(rows)
