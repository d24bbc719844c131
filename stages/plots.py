"""Stage plots: gather every strategy's history and metrics into comparison data, figures and a table.

Run as: python -m stages.plots

Writes, under plots/ (rendered by DVC through the top-level `plots:` of dvc.yaml):
  curves/<strategy>.json   per-epoch rows, one file per strategy so each is its own line
  final_scores.json        one row per strategy and test accuracy (top-1, top-5)
  <figure>.png             the same charts drawn by matplotlib
  summary.md               a markdown table of the final scores
"""

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from stages import paths  # noqa: E402
from stages.atomic import atomic_path, write_json  # noqa: E402
from stages.config import BACKBONE_BLOCKS, IMAGENET_WEIGHTS, Params, StrategyConfig, load_params  # noqa: E402
from stages.errors import UserError, run_stage  # noqa: E402

CURVES_DIR = paths.PLOTS_DIR / "curves"
FINAL_SCORES_PATH = paths.PLOTS_DIR / "final_scores.json"
SUMMARY_PATH = paths.PLOTS_DIR / "summary.md"
# history.json column -> (figure file stem, title, y label); dvc.yaml's top-level plots mirror these.
EPOCH_FIGURES = {
    "train_loss": ("train_loss", "Training loss per epoch", "cross-entropy"),
    "val_top1": ("val_top1", "Validation top-1 accuracy per epoch", "top-1 accuracy"),
    "val_top5": ("val_top5", "Validation top-5 accuracy per epoch", "top-5 accuracy"),
}
TEST_FIGURE = "test_accuracy"


@dataclass(frozen=True)
class StrategyResult:
    strategy: StrategyConfig
    history: list[dict]  # rows of history.json
    metrics: dict  # metrics.json
    timing: dict  # timing.json
    provenance: dict  # provenance.json


def read_json(path: Path) -> object:
    """Parsed JSON at path, or a UserError naming the stage that writes it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run the train stages first: dvc repro") from None


def load_result(strategy: StrategyConfig) -> StrategyResult:
    """One strategy's outputs from results/<strategy>/."""
    name = strategy.name
    return StrategyResult(
        strategy,
        read_json(paths.history_path(name)),
        read_json(paths.metrics_path(name)),
        read_json(paths.timing_path(name)),
        read_json(paths.provenance_path(name)),
    )


def final_score_rows(results: list[StrategyResult]) -> list[dict]:
    """One row per (strategy, test metric): a long table DVC's bar template draws directly."""
    return [
        {"strategy": result.strategy.name, "metric": label, "bar": f"{result.strategy.name} {label}", "accuracy": result.metrics[key]}
        for result in results
        for key, label in (("test_top1", "top-1"), ("test_top5", "top-5"))
    ]


def describe_training(strategy: StrategyConfig) -> str:
    """What trains, in words: 'head', 'layer4 + head', 'all'."""
    if strategy.train_layers == BACKBONE_BLOCKS:
        return "all"
    return " + ".join([*strategy.train_layers, "head"])


def summary_table(results: list[StrategyResult]) -> str:
    """Markdown table of each strategy's final scores and cost."""
    lines = [
        "| strategy | pretrained | trains | trainable params | best epoch | best val top-1 | test top-1 | test top-5 | test loss | train time (min) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        metrics, strategy = result.metrics, result.strategy
        lines.append(
            f"| {strategy.name} | {'yes' if strategy.pretrained else 'no'} | {describe_training(strategy)} "
            f"| {metrics['trainable_params']:,} | {metrics['best_epoch']} | {metrics['best_val_top1']:.4f} "
            f"| {metrics['test_top1']:.4f} | {metrics['test_top5']:.4f} | {metrics['test_loss']:.4f} "
            f"| {result.timing['total_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def provenance_table(results: list[StrategyResult]) -> str:
    """Markdown table of where and with what each strategy ran."""
    lines = ["| strategy | device | python | torch | torchvision | torchmetrics | dvc |", "|---|---|---|---|---|---|---|"]
    for result in results:
        versions = result.provenance["versions"]
        lines.append(
            f"| {result.strategy.name} | {result.provenance['device']} | {versions['python']} | {versions['torch']} "
            f"| {versions['torchvision']} | {versions['torchmetrics']} | {versions['dvc']} |"
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


def save_figure(figure: plt.Figure, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and free it."""
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def draw_epoch_figure(results: list[StrategyResult], column: str, title: str, y_label: str) -> plt.Figure:
    """One line per strategy of a history column against the epoch."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for result in results:
        axes.plot([row["epoch"] for row in result.history], [row[column] for row in result.history], marker="o", label=result.strategy.name)
    axes.set(title=title, xlabel="epoch", ylabel=y_label)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def draw_test_figure(results: list[StrategyResult]) -> plt.Figure:
    """Grouped bars of test top-1 and top-5 per strategy."""
    figure, axes = plt.subplots(figsize=(6, 4))
    names = [result.strategy.name for result in results]
    positions = range(len(names))
    width = 0.38
    for offset, key, label in ((-width / 2, "test_top1", "top-1"), (width / 2, "test_top5", "top-5")):
        values = [result.metrics[key] for result in results]
        bars = axes.bar([position + offset for position in positions], values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set_xticks(list(positions), names)
    axes.set(title="Test accuracy of the best-validation weights", ylabel="accuracy", ylim=(0, 1))
    axes.legend()
    return figure


def main() -> None:
    """Command line: python -m stages.plots."""
    params = load_params()
    results = [load_result(strategy) for strategy in params.strategies.values()]
    for result in results:
        write_json(CURVES_DIR / f"{result.strategy.name}.json", result.history)
    write_json(FINAL_SCORES_PATH, final_score_rows(results))
    for column, (stem, title, y_label) in EPOCH_FIGURES.items():
        save_figure(draw_epoch_figure(results, column, title, y_label), paths.PLOTS_DIR / f"{stem}.png")
    save_figure(draw_test_figure(results), paths.PLOTS_DIR / f"{TEST_FIGURE}.png")
    with atomic_path(SUMMARY_PATH) as temp_path:
        temp_path.write_text(
            "# Final scores\n\n" + provenance_note(params) + "\n" + summary_table(results) + "\n## Provenance\n\n" + provenance_table(results)
        )
    print(f"plots: {len(results)} strategies -> {paths.PLOTS_DIR}/")


if __name__ == "__main__":
    run_stage(main)
