"""Every path the pipeline reads or writes, in one place (dvc.yaml repeats them; a test keeps both in step)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMS_PATH = Path("params.yaml")

RAW_DIR = Path("data/raw")  # the download stage's output: the dataset's archive, or a note that a folder needs none
ARCHIVE_NAMES = {"cifar100": "cifar-100-python.tar.gz", "cifar10": "cifar-10-python.tar.gz"}  # the official names
ARCHIVE_PATH = RAW_DIR / ARCHIVE_NAMES["cifar100"]
NO_ARCHIVE_PATH = RAW_DIR / "no-archive.txt"  # data.dataset: folder downloads nothing
DEFAULT_IMAGE_FOLDER = Path("data/images")  # data.folder's default: in the repository, so dvc.yaml's dep exists
PREPARED_DIR = Path("data/prepared")
PREPARED_PATH = PREPARED_DIR / "splits.npz"

PRETRAINED_DIR = Path("models/pretrained")
PRETRAINED_PATH = PRETRAINED_DIR / "resnet18.pth"
MODELS_DIR = Path("models")

RESULTS_DIR = Path("results")
# File names inside a results folder: a strategy's (over all its seeds) and each seed's own.
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
CONFUSION_FILE = "confusion.json"
TIMING_FILE = "timing.json"
CHECKPOINTS_DIR = Path("checkpoints")  # outside DVC outputs and git: see transfer/training/checkpoint.py
PLOTS_DIR = Path("plots")
PREDICTIONS_DIR = Path("predictions")  # DVC-cached: per-image test predictions, too big for git
COMPARISON_PATH = PLOTS_DIR / "comparison.json"  # paired statistics of every two strategies
COST_PATH = PLOTS_DIR / "cost.json"  # one row per strategy: accuracy against training cost
COST_FIGURE_PATH = PLOTS_DIR / "figures" / "cost.png"  # with the other PNGs: one dvc.yaml entry shows all
# A smaller training set's run of a strategy (data.train_sizes) writes what train@<strategy> writes, under
# sizes/<images per class>/<strategy> in place of <strategy>: results/sizes/10/deep/metrics.json,
# models/sizes/10/deep.pt, predictions/sizes/10/deep/seed_0.npz, checkpoints/sizes/10/deep/.
SIZES_DIR = "sizes"


def archive_path(dataset: str) -> Path:
    """Where the download stage puts a CIFAR dataset's archive (under the official file name)."""
    return RAW_DIR / ARCHIVE_NAMES[dataset]


def subset_run_name(strategy: str, train_per_class: int) -> str:
    """What stands for the strategy's name in every path below for its run on a smaller training set."""
    return f"{SIZES_DIR}/{train_per_class}/{strategy}"


def train_stage_name(strategy: str, train_per_class: int = 0) -> str:
    """The DVC stage that trains a run (dvc.yaml): train@<strategy>, or train_subset@<strategy>-<n> (a smaller set)."""
    return f"train_subset@{strategy}-{train_per_class}" if train_per_class else f"train@{strategy}"


def run_stage_name(run_name: str) -> str:
    """The DVC stage that writes a run's files: a strategy's name, or subset_run_name's sizes/<n>/<strategy>."""
    parts = run_name.split("/")
    if len(parts) == 3 and parts[0] == SIZES_DIR:
        return train_stage_name(parts[2], int(parts[1]))
    return train_stage_name(run_name)


def model_path(strategy: str) -> Path:
    """Trained weights of one strategy."""
    return MODELS_DIR / f"{strategy}.pt"


def onnx_path(strategy: str) -> Path:
    """One strategy's model exported to ONNX."""
    return MODELS_DIR / f"{strategy}.onnx"


def results_dir(strategy: str) -> Path:
    """Folder of one strategy's results over all its seeds."""
    return RESULTS_DIR / strategy


def seeds_dir(strategy: str) -> Path:
    """Folder of one strategy's per-seed results."""
    return results_dir(strategy) / "seeds"


def seed_dir(strategy: str, seed: int) -> Path:
    """The results of one strategy's run with one seed (metrics, history, confusion, timing)."""
    return seeds_dir(strategy) / f"seed_{seed}"


def metrics_path(strategy: str) -> Path:
    """Final scores of one strategy: mean and std over seeds (DVC metrics)."""
    return results_dir(strategy) / METRICS_FILE


def history_path(strategy: str) -> Path:
    """Per-epoch rows of one strategy: mean, min and max over seeds (DVC plots)."""
    return results_dir(strategy) / HISTORY_FILE


def confusion_path(strategy: str) -> Path:
    """Test-set confusion counts of one strategy, summed over seeds, with class and superclass names."""
    return results_dir(strategy) / CONFUSION_FILE


def timing_path(strategy: str) -> Path:
    """Seconds and images/s of one strategy; kept apart so metrics stay byte-reproducible."""
    return results_dir(strategy) / TIMING_FILE


def provenance_path(strategy: str) -> Path:
    """What produced one strategy's results: resolved config, library versions, device."""
    return results_dir(strategy) / "provenance.json"


def checkpoint_dir(strategy: str) -> Path:
    """Where an interrupted train stage keeps its completed epochs, a file per seed."""
    return CHECKPOINTS_DIR / strategy


def checkpoint_path(strategy: str, seed: int, lr_candidate: float | None = None) -> Path:
    """The completed epochs of one strategy's run with one seed (and, during an lr search, one candidate)."""
    suffix = "" if lr_candidate is None else f"_lr_{lr_candidate!r}"
    return checkpoint_dir(strategy) / f"seed_{seed}{suffix}.pt"


def lr_search_path(strategy: str) -> Path:
    """Rows of lr, best_val_top1, best_epoch: the learning-rate candidates tried with the first seed."""
    return results_dir(strategy) / "lr_search.json"


def predictions_dir(strategy: str) -> Path:
    """Folder of one strategy's per-image test predictions, a file per seed."""
    return PREDICTIONS_DIR / strategy


def predictions_path(strategy: str, seed: int) -> Path:
    """Top-5 classes and label of every test image, in test-set order, from one seed's run."""
    return predictions_dir(strategy) / f"seed_{seed}.npz"
