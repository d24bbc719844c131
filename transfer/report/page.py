"""plots/report.md's opening sections: final scores, provenance, curves, test accuracy and confusion."""

from dataclasses import dataclass
from pathlib import Path

from transfer.config import BACKBONE_BLOCKS, IMAGENET_WEIGHTS, Params, StrategyConfig
from transfer.report.layout import (
    EPOCH_FIGURES,
    READABLE_DATASET_NAMES,
    REPORT_PATH,
    TEST_FIGURE,
    confusion_figure_path,
    figure_path,
    table_scores,
)
from transfer.report.strategy_result import StrategyResult, have_superclasses

TOP_CONFUSED_PAIRS = 10  # rows of each strategy's most-confused table in the report


@dataclass(frozen=True)
class ConfusedPair:
    actual: str
    predicted: str
    count: int  # test predictions of `actual` images as `predicted`, summed over seeds
    share: float  # count / all predictions of `actual` images


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


# The summary table's heading of each score in TABLE_SCORES.
SCORE_COLUMNS = {
    "test_top1": "test top-1",
    "test_top1_coarse": "test top-1 superclass",
    "test_top5": "test top-5",
    "test_loss": "test loss",
    "best_val_top1": "best val top-1",
}


TOP_K = 5  # the k of top-k accuracy: predictions keep min(TOP_K, classes) guesses per image


def top_k_note(results: list[StrategyResult]) -> str:
    """A line saying what "top-5" means when there are fewer than 5 classes (every class, always right); else ''."""
    num_classes = len(results[0].confusion["class_names"])
    if num_classes >= TOP_K:
        return ""
    return f"With {num_classes} classes, top-5 is top-{num_classes}: always 1.0, so only top-1 compares.\n"


def summary_table(results: list[StrategyResult]) -> str:
    """Markdown table of each strategy's final scores (mean ± std over seeds) and cost."""
    shown = table_scores(have_superclasses(results))
    columns = [*(SCORE_COLUMNS[key] for key in shown), "best epoch", "trainable params", "minutes per seed", "seeds"]
    lines = [
        f"| strategy | pretrained | trains | {' | '.join(columns)} |",
        "|---|---|---|" + "---:|" * len(columns),
    ]
    for result in results:
        metrics, strategy = result.metrics, result.strategy
        scores = [mean_std(metrics, key, 4) for key in shown]
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
    data = params.data
    where = (
        "your images (`data.dataset: folder`; dvc.lock records the folder's hash)"
        if data.is_folder
        else f"`{data.source}`"
    )
    note = f"Data: {where}. Pretrained backbone: `{params.model.weights}`.\n"
    if data.is_synthetic or params.model.weights != IMAGENET_WEIGHTS:
        dataset = READABLE_DATASET_NAMES[data.dataset]
        note += (
            "\n> These scores come from stand-in inputs (synthetic data or non-ImageNet weights): they show the "
            f"pipeline works and what it costs, not how the strategies compare on {dataset}.\n"
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
        "row scaled to sum to 1 (colour on a square-root scale, so small mistakes show)"
        + ("; classes are grouped by superclass.\n" if have_superclasses(results) else ".\n")
    )
    for result in results:
        name = result.strategy.name
        section += (
            f"\n### {name}\n\n{image_link(confusion_figure_path(name), f'Confusion matrix of {name}')}\n"
            f"The {TOP_CONFUSED_PAIRS} most-confused class pairs:\n\n"
            f"{confused_pairs_table(most_confused_pairs(result.confusion))}"
        )
    return section


def title(params: Params) -> str:
    """'ResNet18 on CIFAR-100', 'ResNet34 on your images': the backbone and the dataset this run compared on."""
    return f"{params.model.arch.replace('resnet', 'ResNet')} on {READABLE_DATASET_NAMES[params.data.dataset]}"


def report(params: Params, results: list[StrategyResult], verdict_section: str) -> str:
    """plots/report.md: the verdict, then scores, provenance, figures and confusion, readable on GitHub."""
    seeds_note = "Each score is the mean ± sample standard deviation over the strategy's seeds (± 0 with one seed).\n"
    curves = "\n".join(image_link(figure_path(stem), title) for stem, title, _ in EPOCH_FIGURES.values())
    return (
        f"# {title(params)}: which way to train it ({', '.join(result.strategy.name for result in results)})\n\n"
        f"{verdict_section}\n{provenance_note(params)}\n## Final scores\n\n{seeds_note}{top_k_note(results)}\n"
        f"{summary_table(results)}\n"
        f"## Provenance\n\n{provenance_table(results)}\n"
        "## Curves\n\nThe line is the mean over seeds, the band the lowest and highest seed.\n\n"
        f"{curves}\n## Test accuracy\n\n{image_link(figure_path(TEST_FIGURE), 'Test accuracy')}\n"
        f"{confusion_section(results)}"
    )
