"""Where the plots stage writes, and which charts it draws: shared by the data files, figures and report.

dvc.yaml's top-level `plots:` mirror these paths and EPOCH_FIGURES (tests/test_pipeline_declarations.py).
"""

from pathlib import Path

from transfer import paths

EPOCHS_PATH = paths.PLOTS_DIR / "epochs.json"
CONFUSION_PATH = paths.PLOTS_DIR / "confusion.json"
FIGURES_DIR = paths.PLOTS_DIR / "figures"  # one plot entry in dvc.yaml renders every PNG here
FINAL_SCORES_PATH = paths.PLOTS_DIR / "final_scores.json"
REPORT_PATH = paths.PLOTS_DIR / "report.md"
VERDICT_PATH = paths.PLOTS_DIR / "verdict.json"  # declared as metrics: dvc exp show lists it per experiment
# One row per (strategy, training-set size): data.train_sizes and the whole split (transfer/report/data_budget.py).
DATA_BUDGET_PATH = paths.PLOTS_DIR / "data_budget.json"
# Everything the stage writes, each its own output in dvc.yaml: the verdict is metrics, the rest are not.
STAGE_OUTPUTS = (
    EPOCHS_PATH,
    FINAL_SCORES_PATH,
    CONFUSION_PATH,
    paths.COMPARISON_PATH,
    paths.COST_PATH,
    DATA_BUDGET_PATH,
    REPORT_PATH,
    FIGURES_DIR,
)
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
# data.dataset -> what people call it
READABLE_DATASET_NAMES = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "folder": "your images"}
SUPERCLASS_SCORE = "test_top1_coarse"  # metrics.json has it only where the dataset has superclasses (CIFAR-100)


def test_accuracies(has_superclasses: bool) -> dict[str, str]:
    """TEST_ACCURACIES, without the superclass score for a dataset that has none."""
    return {key: label for key, label in TEST_ACCURACIES.items() if has_superclasses or key != SUPERCLASS_SCORE}


def table_scores(has_superclasses: bool) -> tuple[str, ...]:
    """TABLE_SCORES, without the superclass score for a dataset that has none."""
    return tuple(key for key in TABLE_SCORES if has_superclasses or key != SUPERCLASS_SCORE)


def figure_path(stem: str) -> Path:
    """A matplotlib figure of the stage."""
    return FIGURES_DIR / f"{stem}.png"


# Validation top-1 against the training FLOPs spent by each epoch (report/convergence.py).
FLOPS_FIGURE_PATH = figure_path("val_top1_by_flops")
# Test top-1 against training images per class, drawn only when data.train_sizes lists a size (report/data_budget.py).
DATA_BUDGET_FIGURE_PATH = figure_path("data_budget")


def confusion_figure_path(strategy: str) -> Path:
    """Row-normalised confusion heatmap of one strategy."""
    return figure_path(f"confusion_{strategy}")


def figure_paths(strategies: list[str]) -> list[Path]:
    """Every PNG the stage draws, in report order; dvc.yaml's top-level plots list the same."""
    stems = [stem for stem, _, _ in EPOCH_FIGURES.values()] + [TEST_FIGURE]
    return [figure_path(stem) for stem in stems] + [confusion_figure_path(name) for name in strategies]
