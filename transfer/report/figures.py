"""The report's PNGs, drawn by matplotlib: curves with their seed band, test accuracy, confusion heatmaps."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from transfer.aggregate import SPREAD_SUFFIXES  # noqa: E402
from transfer.atomic import atomic_path  # noqa: E402
from transfer.report.layout import (  # noqa: E402
    EPOCH_FIGURES,
    TEST_FIGURE,
    confusion_figure_path,
    figure_path,
    test_accuracies,
)
from transfer.report.strategy_result import StrategyResult, have_superclasses  # noqa: E402

MIN_LABEL_POINTS = 5.0  # the smallest class label still legible at 100 dpi: 100 classes get this
MAX_LABEL_POINTS = 9.0  # the axis labels' own size: a class label never outgrows them
# Below this ratio of the largest to the smallest FLOPs a log axis has no 1-2-5 tick to label: linear is as honest.
LOG_AXIS_MIN_RATIO = 3.0
# Up to this many decades 1, 2 and 5 of each are labelled (at most ~7 labels of 4 characters fit 6 inches); beyond,
# only the powers of ten.
MAX_DECADES_LABELLED_1_2_5 = 2.0


def save_figure(figure: plt.Figure, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and free it."""
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def draw_epoch_figure(results: list[StrategyResult], column: str, title: str, y_label: str) -> plt.Figure:
    """Per strategy, a history column's mean against the epoch, in a band from its lowest to highest seed."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for result in results:
        epochs = [row["epoch"] for row in result.history]
        (line,) = axes.plot(epochs, [row[column] for row in result.history], marker="o", label=result.strategy.name)
        low, high = ([row[column + suffix] for row in result.history] for suffix in SPREAD_SUFFIXES)
        axes.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set(title=title, xlabel="epoch", ylabel=y_label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def draw_test_figure(results: list[StrategyResult]) -> plt.Figure:
    """Grouped bars of each test accuracy per strategy, with error bars of one std over seeds."""
    figure, axes = plt.subplots(figsize=(7, 4))
    names = [result.strategy.name for result in results]
    accuracies = test_accuracies(have_superclasses(results))
    width = 0.8 / len(accuracies)
    for index, (key, label) in enumerate(accuracies.items()):
        positions = [position + (index - (len(accuracies) - 1) / 2) * width for position in range(len(names))]
        means = [result.metrics[key] for result in results]
        stds = [result.metrics[f"{key}_std"] for result in results]
        bars = axes.bar(positions, means, width, yerr=stds, capsize=3, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.set_xticks(list(range(len(names))), names)
    # Headroom above 1 for the legend, so it never covers a bar.
    axes.set(
        title="Test accuracy of the best-validation weights (mean ± std over seeds)", ylabel="accuracy", ylim=(0, 1.2)
    )
    axes.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.legend(loc="upper left", ncols=len(accuracies))
    return figure


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row without images stays 0): the share of each actual class."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


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


def label_fontsize(figure_inches: float, num_classes: int) -> float:
    """Points for the class labels: three quarters of a cell's height, within 5 (100 classes) and 9 (10 classes).

    The heatmap takes about three quarters of the figure's side; a label taller than its cell overlaps
    its neighbours, and one much smaller than the cell is hard to read at 10 classes.
    """
    cell_points = 72 * 0.75 * figure_inches / num_classes
    return min(MAX_LABEL_POINTS, max(MIN_LABEL_POINTS, 0.75 * cell_points))


def draw_confusion_figure(name: str, confusion: dict) -> plt.Figure:
    """Row-normalised heatmap, classes ordered by superclass so related classes sit together."""
    fine_to_coarse = confusion["fine_to_coarse"]
    order = sorted(range(len(fine_to_coarse)), key=lambda index: (fine_to_coarse[index], index))
    shares = row_normalised(np.array(confusion["counts"], dtype=float))[np.ix_(order, order)]
    labels = [confusion["class_names"][index] for index in order]
    size = max(6.0, 0.12 * len(labels))  # inches; about 12 px a class label at 100 dpi
    figure, axes = plt.subplots(figsize=(size, size))
    # Square-root colour scale: mistakes of a few percent would be invisible next to a 0.8 diagonal.
    image = axes.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
    fontsize = label_fontsize(size, len(labels))
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
    axes.set_yticks(range(len(labels)), labels, fontsize=fontsize)
    # Lines between superclasses: confusion inside a block is between related classes.
    for boundary in [
        i + 0.5 for i in range(len(order) - 1) if fine_to_coarse[order[i]] != fine_to_coarse[order[i + 1]]
    ]:
        axes.axhline(boundary, color="grey", linewidth=0.3)
        axes.axvline(boundary, color="grey", linewidth=0.3)
    axes.set(title=f"Test confusion of {name} (row-normalised, all seeds)", xlabel="predicted", ylabel="actual")
    figure.colorbar(image, ax=axes, fraction=0.04, label="share of the actual class (square-root scale)")
    return figure


def draw_figures(results: list[StrategyResult]) -> None:
    """Every PNG: per-epoch curves, test accuracy, a confusion heatmap per strategy."""
    for column, (stem, title, y_label) in EPOCH_FIGURES.items():
        save_figure(draw_epoch_figure(results, column, title, y_label), figure_path(stem))
    save_figure(draw_test_figure(results), figure_path(TEST_FIGURE))
    for result in results:
        save_figure(
            draw_confusion_figure(result.strategy.name, result.confusion), confusion_figure_path(result.strategy.name)
        )
