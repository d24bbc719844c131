"""What each training budget buys: validation top-1 against the training FLOPs spent, and when each strategy first
reaches one common target.

The target is TARGET_FRACTION of the best strategy's best validation top-1 (means over seeds), the same bar for
every strategy: "reached at epoch 3" then means the same accuracy whoever reached it. A share of each strategy's
own best, as before, let a weak strategy "converge" early and could not be compared across strategies.
"""

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from transfer.aggregate import SPREAD_SUFFIXES  # noqa: E402
from transfer.report.figures import scale_flops_axis  # noqa: E402
from transfer.report.strategy_result import StrategyResult  # noqa: E402

TARGET_FRACTION = 0.9


@dataclass(frozen=True)
class Convergence:
    """When one strategy first reached the common target; None where it never did."""

    epoch: int | None
    train_flops: int | None  # spent by the end of that epoch (metrics.json's train_flops_by_epoch)


def convergence_target(results: list[StrategyResult]) -> float:
    """TARGET_FRACTION of the best mean validation top-1 any strategy reached at any epoch."""
    return TARGET_FRACTION * max(row["val_top1"] for result in results for row in result.history)


def convergence(result: StrategyResult, target: float) -> Convergence:
    """The first epoch whose mean validation top-1 reaches target, and the FLOPs spent by then."""
    spent = result.metrics["train_flops_by_epoch"]
    for row, flops in zip(result.history, spent, strict=True):
        if row["val_top1"] >= target:
            return Convergence(row["epoch"], flops)
    return Convergence(None, None)


def draw_flops_figure(results: list[StrategyResult], target: float) -> plt.Figure:
    """Per strategy, mean validation top-1 at the end of each epoch against the training FLOPs spent (log x)."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for result in results:
        spent = result.metrics["train_flops_by_epoch"]
        (line,) = axes.plot(spent, [row["val_top1"] for row in result.history], marker="o", label=result.strategy.name)
        low, high = ([row["val_top1" + suffix] for row in result.history] for suffix in SPREAD_SUFFIXES)
        axes.fill_between(spent, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target ({TARGET_FRACTION:.0%} of best)")
    scale_flops_axis(axes, [flops for result in results for flops in result.metrics["train_flops_by_epoch"]])
    axes.set(
        title="Validation top-1 against training compute",
        xlabel="training FLOPs spent (one seed, by the end of each epoch)",
        ylabel="top-1 accuracy",
    )
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    return figure
