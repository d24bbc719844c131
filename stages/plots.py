"""Stage plots: gather every strategy's results into comparison data, figures and a report.

Run as: python -m stages.plots

Reads results/<strategy>/ (metrics, history, confusion, timing and provenance; each figure the mean
over the strategy's seeds, with its spread). Writes, under plots/ (rendered by DVC through the
top-level `plots:` of dvc.yaml):
  epochs.json                per-epoch rows of every strategy (a `strategy` field each): each column's
                             mean with its _min/_max over seeds
  final_scores.json          one row per strategy and test accuracy: mean and std over seeds
  confusion.json             one {strategy, actual, predicted} row per test prediction (every seed's)
  figures/<figure>.png       the same charts drawn by matplotlib, a confusion heatmap per strategy, cost.png
  report.md                  the final table (mean ± std), provenance, figures, most-confused classes,
                             the paired comparison and the cost table
  comparison.json            paired statistics of every two strategies (stages/comparison.py), from
                             predictions/<strategy>/seed_<n>.npz checked against the prepared test labels
  cost.json                  test top-1 against training FLOPs, one row per strategy (stages/cost.py)
Every file holds all strategies, so dvc.yaml names none: a strategy added in params.yaml shows everywhere.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from stages import comparison, cost, paths  # noqa: E402
from stages.aggregate import SPREAD_SUFFIXES  # noqa: E402
from stages.atomic import atomic_path, write_json  # noqa: E402
from stages.config import BACKBONE_BLOCKS, IMAGENET_WEIGHTS, Params, StrategyConfig, load_params  # noqa: E402
from stages.errors import UserError, run_stage  # noqa: E402

EPOCHS_PATH = paths.PLOTS_DIR / "epochs.json"
CONFUSION_PATH = paths.PLOTS_DIR / "confusion.json"
FIGURES_DIR = paths.PLOTS_DIR / "figures"  # one plot entry in dvc.yaml renders every PNG here
FINAL_SCORES_PATH = paths.PLOTS_DIR / "final_scores.json"
REPORT_PATH = paths.PLOTS_DIR / "report.md"
# history.json column -> (figure file stem, title, y label); dvc.yaml's top-level plots mirror these.
EPOCH_FIGURES = {
    "train_loss": ("train_loss", "Training loss per epoch", "cross-entropy"),
    "val_top1": ("val_top1", "Validation top-1 accuracy per epoch", "top-1 accuracy"),
    "val_top5": ("val_top5", "Validation top-5 accuracy per epoch", "top-5 accuracy"),
}
TEST_FIGURE = "test_accuracy"
# metrics.json key -> bar label, for final_scores.json and the test accuracy figure.
TEST_ACCURACIES = {"test_top1": "top-1", "test_top1_coarse": "top-1 superclass", "test_top5": "top-5"}
TABLE_SCORES = (
    "test_top1",
    "test_top1_coarse",
    "test_top5",
    "test_loss",
    "best_val_top1",
)  # the report's mean ± std columns
TOP_CONFUSED_PAIRS = 10  # rows of each strategy's most-confused table in the report


@dataclass(frozen=True)
class StrategyResult:
    strategy: StrategyConfig
    history: list[dict]  # rows of history.json
    metrics: dict  # metrics.json
    confusion: dict  # confusion.json
    timing: dict  # timing.json
    provenance: dict  # provenance.json


@dataclass(frozen=True)
class ConfusedPair:
    actual: str
    predicted: str
    count: int  # test predictions of `actual` images as `predicted`, summed over seeds
    share: float  # count / all predictions of `actual` images


def figure_path(stem: str) -> Path:
    """A matplotlib figure of the stage."""
    return FIGURES_DIR / f"{stem}.png"


def confusion_figure_path(strategy: str) -> Path:
    """Row-normalised confusion heatmap of one strategy."""
    return figure_path(f"confusion_{strategy}")


def figure_paths(strategies: list[str]) -> list[Path]:
    """Every PNG the stage draws, in report order; dvc.yaml's top-level plots list the same."""
    stems = [stem for stem, _, _ in EPOCH_FIGURES.values()] + [TEST_FIGURE]
    return [figure_path(stem) for stem in stems] + [confusion_figure_path(name) for name in strategies]


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
    scores = [*TEST_ACCURACIES, *TABLE_SCORES, "best_epoch"]
    require_keys(
        result.metrics, [*scores, *(f"{key}_std" for key in scores), "trainable_params"], paths.metrics_path(name)
    )
    require_keys(result.confusion, ["class_names", "fine_to_coarse", "counts", "seeds"], paths.confusion_path(name))
    require_keys(result.timing, ["seconds_per_seed", "device"], paths.timing_path(name))
    require_keys(result.provenance, ["model_seed", "versions", "device"], paths.provenance_path(name))
    return result


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


def most_confused_pairs(confusion: dict, limit: int = TOP_CONFUSED_PAIRS) -> list[ConfusedPair]:
    """The off-diagonal cells with the most predictions, largest first (ties by actual, then predicted class)."""
    names, counts = confusion["class_names"], confusion["counts"]
    cells = [
        (-count, actual, predicted)
        for actual, row in enumerate(counts)
        for predicted, count in enumerate(row)
        if actual != predicted and count > 0
    ]
    return [
        ConfusedPair(names[actual], names[predicted], -negated_count, -negated_count / sum(counts[actual]))
        for negated_count, actual, predicted in sorted(cells)[:limit]
    ]


def describe_training(strategy: StrategyConfig) -> str:
    """What trains, in words: 'head', 'layer4 + head', 'all'."""
    if strategy.train_layers == BACKBONE_BLOCKS:
        return "all"
    return " + ".join([*strategy.train_layers, "head"])


def mean_std(metrics: dict, key: str, digits: int) -> str:
    """'mean ± std' of one metrics.json figure."""
    return f"{metrics[key]:.{digits}f} ± {metrics[f'{key}_std']:.{digits}f}"


def summary_table(results: list[StrategyResult]) -> str:
    """Markdown table of each strategy's final scores (mean ± std over seeds) and cost."""
    lines = [
        "| strategy | pretrained | trains | test top-1 | test top-1 superclass | test top-5 | test loss "
        "| best val top-1 "
        "| best epoch | trainable params | minutes per seed | seeds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        metrics, strategy = result.metrics, result.strategy
        scores = [mean_std(metrics, key, 4) for key in TABLE_SCORES]
        lines.append(
            f"| {strategy.name} | {'yes' if strategy.pretrained else 'no'} | {describe_training(strategy)} "
            f"| {' | '.join(scores)} "
            f"| {mean_std(metrics, 'best_epoch', 1)} | {metrics['trainable_params']:,} "
            f"| {result.timing['seconds_per_seed'] / 60:.1f} | {len(result.confusion['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def provenance_table(results: list[StrategyResult]) -> str:
    """Markdown table of where and with what each strategy ran."""
    lines = [
        "| strategy | device | saved model's seed | python | torch | torchvision | torchmetrics | dvc |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for result in results:
        provenance = result.provenance
        versions = provenance["versions"]
        lines.append(
            f"| {result.strategy.name} | {provenance['device']} | {provenance['model_seed']} | {versions['python']} "
            f"| {versions['torch']} | {versions['torchvision']} | {versions['torchmetrics']} | {versions['dvc']} |"
        )
    return "\n".join(lines) + "\n"


def provenance_note(params: Params) -> str:
    """Where the data and backbone weights came from, with a warning when they are stand-ins."""
    note = f"Data: `{params.data.source}`. Pretrained backbone: `{params.model.weights}`.\n"
    if params.data.is_synthetic or params.model.weights != IMAGENET_WEIGHTS:
        note += (
            "\n> These scores come from stand-in inputs (synthetic data or non-ImageNet weights): they show the "
            "pipeline works and what it costs, not how the strategies compare on CIFAR-100.\n"
        )
    return note


def confused_pairs_table(pairs: list[ConfusedPair]) -> str:
    """Markdown table of the most-confused class pairs."""
    lines = ["| actual | predicted as | predictions | share of actual |", "|---|---|---:|---:|"]
    lines += [f"| {pair.actual} | {pair.predicted} | {pair.count:,} | {pair.share:.1%} |" for pair in pairs]
    return "\n".join(lines) + "\n"


def image_link(path: Path, alt: str) -> str:
    """Markdown image relative to the report, so it shows on GitHub and in a local viewer."""
    return f"![{alt}]({path.relative_to(REPORT_PATH.parent).as_posix()})\n"


def confusion_section(results: list[StrategyResult]) -> str:
    """Per strategy: the heatmap and the most-confused class pairs."""
    section = (
        "## Test-set confusion\n\nRows are the actual class, columns the prediction, counts summed over seeds and each "
        "row scaled to sum to 1 (colour on a square-root scale, so small mistakes show); "
        "classes are grouped by superclass.\n"
    )
    for result in results:
        name = result.strategy.name
        section += (
            f"\n### {name}\n\n{image_link(confusion_figure_path(name), f'Confusion matrix of {name}')}\n"
            f"The {TOP_CONFUSED_PAIRS} most-confused class pairs:\n\n"
            f"{confused_pairs_table(most_confused_pairs(result.confusion))}"
        )
    return section


def report(params: Params, results: list[StrategyResult]) -> str:
    """plots/report.md: scores, provenance, figures and confusion, readable on GitHub."""
    seeds_note = "Each score is the mean ± sample standard deviation over the strategy's seeds (± 0 with one seed).\n"
    curves = "\n".join(image_link(figure_path(stem), title) for stem, title, _ in EPOCH_FIGURES.values())
    return (
        "# ResNet18 on CIFAR-100: shallow fine-tuning, deep fine-tuning or from scratch\n\n"
        f"{provenance_note(params)}\n## Final scores\n\n{seeds_note}\n{summary_table(results)}\n"
        f"## Provenance\n\n{provenance_table(results)}\n"
        "## Curves\n\nThe line is the mean over seeds, the band the lowest and highest seed.\n\n"
        f"{curves}\n## Test accuracy\n\n{image_link(figure_path(TEST_FIGURE), 'Test accuracy')}\n"
        f"{confusion_section(results)}"
    )


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
    width = 0.8 / len(TEST_ACCURACIES)
    for index, (key, label) in enumerate(TEST_ACCURACIES.items()):
        positions = [position + (index - (len(TEST_ACCURACIES) - 1) / 2) * width for position in range(len(names))]
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
    axes.legend(loc="upper left", ncols=len(TEST_ACCURACIES))
    return figure


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row without images stays 0): the share of each actual class."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


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
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    axes.set_yticks(range(len(labels)), labels, fontsize=5)
    # Lines between superclasses: confusion inside a block is between related classes.
    for boundary in [
        i + 0.5 for i in range(len(order) - 1) if fine_to_coarse[order[i]] != fine_to_coarse[order[i + 1]]
    ]:
        axes.axhline(boundary, color="grey", linewidth=0.3)
        axes.axvline(boundary, color="grey", linewidth=0.3)
    axes.set(title=f"Test confusion of {name} (row-normalised, all seeds)", xlabel="predicted", ylabel="actual")
    figure.colorbar(image, ax=axes, fraction=0.04, label="share of the actual class (square-root scale)")
    return figure


def write_data(results: list[StrategyResult]) -> None:
    """The files DVC renders, each holding every strategy: per-epoch rows, final scores, confusion rows."""
    write_json(EPOCHS_PATH, epoch_rows(results))
    write_json(FINAL_SCORES_PATH, final_score_rows(results))
    write_rows(
        CONFUSION_PATH,
        [row for result in results for row in confusion_rows(result.strategy.name, result.confusion)],
    )


def draw_figures(results: list[StrategyResult]) -> None:
    """Every PNG: per-epoch curves, test accuracy, a confusion heatmap per strategy."""
    for column, (stem, title, y_label) in EPOCH_FIGURES.items():
        save_figure(draw_epoch_figure(results, column, title, y_label), figure_path(stem))
    save_figure(draw_test_figure(results), figure_path(TEST_FIGURE))
    for result in results:
        save_figure(
            draw_confusion_figure(result.strategy.name, result.confusion), confusion_figure_path(result.strategy.name)
        )


def main() -> None:
    """Command line: python -m stages.plots."""
    params = load_params()
    results = [load_result(strategy) for strategy in params.strategies.values()]
    # Read and checked before anything is written: a bad predictions file leaves plots/ as it was.
    names = [result.strategy.name for result in results]
    pairs = comparison.compare_strategies(
        {result.strategy.name: result.metrics for result in results},
        {result.strategy.name: result.confusion["seeds"] for result in results},
    )
    cost_rows = [cost.cost_row(r.strategy.name, r.metrics, r.timing, r.history) for r in results]
    write_data(results)
    draw_figures(results)
    sections = comparison.write_comparison(pairs, names) + "\n" + cost.write_cost(cost_rows)
    with atomic_path(REPORT_PATH) as temp_path:
        temp_path.write_text(report(params, results) + "\n" + sections)
    print(f"plots: {len(results)} strategies -> {paths.PLOTS_DIR}/")


if __name__ == "__main__":
    run_stage(main)
