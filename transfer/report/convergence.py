"""What each training budget buys: validation top-1 against the training FLOPs spent, and when each strategy first
reaches one common target.

The target is TARGET_FRACTION of the best strategy's best validation top-1 (means over seeds), the same bar for
every strategy: "reached at epoch 3" then means the same accuracy whoever reached it. A share of each strategy's
own best, as before, let a weak strategy "converge" early and could not be compared across strategies.
"""

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from transfer.aggregate import SPREAD_SUFFIXES  # noqa: E402
from transfer.report.results import StrategyResult  # noqa: E402

TARGET_FRACTION = 0.9
# Below this ratio of the largest to the smallest FLOPs a log axis has no 1-2-5 tick to label: linear is as honest.
LOG_AXIS_MIN_RATIO = 3.0
# Up to this many decades 1, 2 and 5 of each are labelled (at most ~7 labels of 4 characters fit 6 inches); beyond,
# only the powers of ten.
MAX_DECADES_LABELLED_1_2_5 = 2.0


def scale_flops_axis(axes: plt.Axes, flops: list[float]) -> None:
    """A FLOPs x axis with a few short labels that never overlap ("200G", "1T").

    Log scale where the values span a wide range (a cached probe next to a full fine-tune); matplotlib's own
    log labels then crowd every minor tick, so only 1, 2 and 5 of each decade (or only powers of ten) are labelled.
    """
    if max(flops) < LOG_AXIS_MIN_RATIO * min(flops):
        axes.xaxis.set_major_locator(MaxNLocator(5))
    else:
        axes.set_xscale("log")  # first: setting the scale resets the axis's locators and formatters
        decades = math.log10(max(flops) / min(flops))
        subs = (1.0,) if decades > MAX_DECADES_LABELLED_1_2_5 else (1.0, 2.0, 5.0)
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))


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
