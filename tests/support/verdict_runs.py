"""Made-up results of a whole run from given per-image correctness, for the plots stage: the verdict's inputs.

Each strategy's correctness (images, seeds) becomes its predictions (the label first where right), its
metrics.json (test_top1 the mean over seeds, with its sample sd) and the other results/ files the report reads.
"""

import json
from pathlib import Path

import numpy as np

from transfer import paths
from transfer.atomic import save_npz

CLASSES = 10
SECONDS_PER_SEED = 120.0
EPOCHS = 2
TRAIN_PER_CLASS = 45  # the whole training split's images of each class


def history() -> list[dict]:
    """Per-epoch rows with every band column."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "lr": 0.1, "phase": 1}
        for column in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            row |= {column: epoch / 10, f"{column}_min": epoch / 10 - 0.05, f"{column}_max": epoch / 10 + 0.05}
        rows.append(row)
    return rows


def metrics(correct: np.ndarray, index: int) -> dict:
    """metrics.json of one strategy whose top-1 (and top-5) correctness is correct (images, seeds)."""
    seed_top1 = correct.mean(axis=0)
    spread = float(np.std(seed_top1, ddof=1)) if correct.shape[1] > 1 else 0.0
    figures = {"test_top1": (float(seed_top1.mean()), spread), "test_top5": (float(seed_top1.mean()), spread)}
    figures |= {key: (0.5, 0.0) for key in ("test_loss", "test_top1_coarse", "best_val_top1", "best_epoch")}
    result = {}
    for key, (mean, std) in figures.items():
        result |= {key: round(mean, 6), f"{key}_std": round(std, 6)}
    flops = [10**12 * (index + 1) * epoch for epoch in range(1, EPOCHS + 1)]
    return result | {
        "trainable_params": 1000 * (index + 1),
        "total_params": 10**6,
        "train_flops": flops[-1],
        "train_flops_by_epoch": flops,
        "tuning_flops": 0,
        "lr_candidates": 1,
        "num_seeds": correct.shape[1],
    }


def write_run(root: Path, correct: dict[str, np.ndarray]) -> None:
    """results/, predictions/ and the prepared labels of a run with each strategy's correctness.

    A name may be a run on a smaller training set, paths.subset_run_name(strategy, size): its files go there.
    """
    images = len(next(iter(correct.values())))
    labels = np.arange(images) % CLASSES
    # The training labels too: plots/data_budget.json counts the whole split's training images from them.
    train_labels = np.arange(CLASSES * TRAIN_PER_CLASS) % CLASSES
    save_npz(root / paths.PREPARED_PATH, {"test_labels": labels, "train_labels": train_labels})
    wrong = (labels[:, None] + np.arange(1, 6)) % CLASSES  # five classes, none the label
    for index, (name, right) in enumerate(correct.items()):
        seeds = list(range(right.shape[1]))
        for seed in seeds:
            top5 = wrong.copy()
            top5[right[:, seed], 0] = labels[right[:, seed]]
            save_npz(root / paths.predictions_path(name, seed), {"top5": top5, "labels": labels})
        counts = np.zeros((CLASSES, CLASSES), dtype=int)
        np.add.at(counts, (labels, labels), 1)
        files = {
            paths.metrics_path(name): metrics(right, index),
            paths.history_path(name): history(),
            paths.confusion_path(name): {
                "class_names": [f"class_{k}" for k in range(CLASSES)],
                "coarse_class_names": ["coarse_0", "coarse_1"],
                "fine_to_coarse": [k // 5 for k in range(CLASSES)],
                "seeds": seeds,
                "counts": counts.tolist(),
            },
            paths.timing_path(name): {
                "total_seconds": SECONDS_PER_SEED * len(seeds),
                "seconds_per_seed": SECONDS_PER_SEED,
                "seed_seconds": [SECONDS_PER_SEED] * len(seeds),
                "tuning_seconds": 0.0,
                "device": "cpu",
            },
            paths.provenance_path(name): made_up_provenance(name, model_seed=0),
        }
        # Each seed's own test top-1 (plots/data_budget.json's band over seeds).
        files |= {
            paths.seed_dir(name, seed) / paths.METRICS_FILE: {"test_top1": round(float(right[:, seed].mean()), 6)}
            for seed in seeds
        }
        write_json_files(root, files)


def made_up_provenance(name: str, model_seed: int) -> dict:
    """A provenance.json as the train stage writes it, with placeholder versions."""
    return {
        "strategy": name,
        "config": {},
        "versions": dict.fromkeys(("python", "torch", "torchvision", "torchmetrics", "numpy", "dvc"), "1.0"),
        "device": "cpu, float32",
        "model_seed": model_seed,
    }


def write_json_files(root: Path, files: dict[Path, object]) -> None:
    """Write each path (relative to root) as JSON, creating its folders."""
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(json.dumps(content))
