"""Accuracy against training cost, one row per strategy: plots/cost.json, its PNG and report.md's section.

train_flops (metrics.json, transfer/flops.py) is deterministic and comparable between machines;
train_seconds (timing.json's seconds_per_seed) is what one seed's run took on the machine it ran on.
"""

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from transfer import paths  # noqa: E402
from transfer.atomic import atomic_path, write_json  # noqa: E402
from transfer.errors import UserError  # noqa: E402

BEST_FRACTION = 0.9  # "converged" means first reaching this share of the strategy's best validation top-1


def epochs_to_fraction_of_best(history: list[dict], fraction: float = BEST_FRACTION) -> int:
    """First epoch whose mean validation top-1 reaches fraction of the best epoch's."""
    best = max(row["val_top1"] for row in history)
    return next(row["epoch"] for row in history if row["val_top1"] >= fraction * best)


def cost_row(strategy: str, metrics: dict, timing: dict, history: list[dict]) -> dict:
    """One row of cost.json from a strategy's metrics.json, timing.json and history.json."""
    if "train_flops" not in metrics:
        raise UserError(
            f"{paths.metrics_path(strategy)} has no 'train_flops'; it predates this plots stage: "
            f"rerun the train stages with dvc repro"
        )
    return {
        "strategy": strategy,
        "test_top1": metrics["test_top1"],
        "train_flops": metrics["train_flops"],  # one seed's run
        "train_seconds": timing["seconds_per_seed"],  # one seed's run, test pass included; machine-dependent
        "trainable_params": metrics["trainable_params"],
        "epochs_to_90pct_best_val_top1": epochs_to_fraction_of_best(history),
    }


def draw_cost_figure(rows: list[dict]) -> plt.Figure:
    """Test top-1 against training FLOPs (log scale), one labelled point per strategy."""
    figure, axes = plt.subplots(figsize=(6, 4))
    labels_at: dict[int, int] = {}  # train_flops -> labels already placed there
    for row in rows:
        axes.scatter(row["train_flops"], row["test_top1"], label=row["strategy"])
        # Strategies of equal cost (full and scratch train the same network) get a line each, not one blur.
        stacked = labels_at.get(row["train_flops"], 0)
        labels_at[row["train_flops"]] = stacked + 1
        axes.annotate(
            row["strategy"],
            (row["train_flops"], row["test_top1"]),
            textcoords="offset points",
            xytext=(5, 5 - 12 * stacked),
        )
    axes.set_xscale("log")
    axes.set(title="Test top-1 against training compute", xlabel="training FLOPs (one seed)", ylabel="test top-1")
    axes.grid(alpha=0.3, which="both")
    return figure


def cost_section(rows: list[dict]) -> str:
    """report.md's section: the cost table and the figure."""
    lines = [
        "## Accuracy against cost\n",
        "Training FLOPs count every training step and validation pass of one seed's run "
        "(forward, and backward where gradients flow; cached frozen features counted once), from "
        "`torch.utils.flop_counter.FlopCounterMode`: the same on every machine. Seconds are one seed's run "
        "on the machine it ran on.\n",
        "| strategy | test top-1 | training FLOPs | seconds per seed | trainable params "
        f"| epochs to {BEST_FRACTION:.0%} of best val top-1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['strategy']} | {row['test_top1']:.4f} | {row['train_flops']:.3g} | {row['train_seconds']:.1f} "
        f"| {row['trainable_params']:,} | {row['epochs_to_90pct_best_val_top1']} |"
        for row in rows
    ]
    figure = paths.COST_FIGURE_PATH.relative_to(paths.PLOTS_DIR).as_posix()
    return "\n".join(lines) + f"\n\n![Test top-1 against training FLOPs]({figure})\n"


def write_cost(rows: list[dict]) -> str:
    """Write plots/cost.json and plots/figures/cost.png; return report.md's section."""
    write_json(paths.COST_PATH, rows)
    figure = draw_cost_figure(rows)
    with atomic_path(paths.COST_FIGURE_PATH) as temp_path:
        figure.savefig(temp_path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return cost_section(rows)
