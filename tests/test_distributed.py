"""compute.nproc = 2: the train stage relaunches itself under torchrun, two gloo processes on the CPU.

Every rank draws the same permutation and trains on its half of each global batch; DDP averages
the two halves' gradients. Where nothing that trains depends on the batch as a whole, that is the
single-process step up to the order of floating-point additions: the `probe` strategy trains only
the head, on cached frozen features (no augmentation draws, BatchNorm frozen in eval mode). Its
gradient is a mean over 64 images either way, summed in a different order: a relative difference
of a few fp32 roundings (2^-24 each) per step. Over the 2 epochs of 14 steps, momentum SGD on a
linear head keeps such differences at that scale (a convex problem does not amplify them), so
LOSS_RTOL = 1e-4 leaves two orders of magnitude of margin, while any real change in what a step
computes (a missing gradient average, a rank training on the wrong rows) moves the loss by percents.
A validation image changes its top-1 only if two of its logits lie within that tiny difference, so
top-1 may differ by at most a couple of images.

Strategies whose training BatchNorm layers see half a batch on each rank (deep, scratch) compute a
different step by design; for them the test checks that the run completes and reports what one
process reports, not the numbers.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.project import copy_code, params_tree, write_params
from transfer import paths

pytestmark = pytest.mark.pipeline  # every test here trains through a stage process or DVC

EXACT_STRATEGY = "probe"  # head only, cached features: the same step on 1 or 2 processes
BATCHNORM_STRATEGY = "deep"  # layer4's BatchNorm trains on each rank's half batch
SMALL_RUN = {
    "data": {"val_size": 200, "synthetic": {"train_size": 1100, "test_size": 200}},
    "strategy": {"epochs": 2, "batch_size": 64},
}
LOSS_RTOL = 1e-4
TOP1_ATOL = 2 / SMALL_RUN["data"]["val_size"]  # two validation images


def write_small_params(project: Path, nproc: int) -> None:
    """The test params for a small synthetic run, with compute.nproc = nproc; one rate for each strategy."""
    tree = params_tree({**SMALL_RUN, "compute": {"nproc": nproc}})
    for strategy in tree["strategies"].values():  # the lr search is the same on 1 or 2 processes: not run twice
        if isinstance(strategy.get("lr"), list):
            del strategy["lr"]
    write_params(project, tree)


def run_module(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    """python -m <arguments> in project; fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", *arguments], cwd=project, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"{arguments} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def train_with(project: Path, strategy: str, nproc: int) -> tuple[dict, list[dict], str]:
    """metrics.json, history.json and stdout of a fresh train stage run with nproc processes."""
    write_small_params(project, nproc)
    shutil.rmtree(project / paths.results_dir(strategy), ignore_errors=True)
    result = run_module(project, "stages.train", strategy)
    metrics = json.loads((project / paths.metrics_path(strategy)).read_text())
    history = json.loads((project / paths.history_path(strategy)).read_text())
    return metrics, history, result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with a small synthetic dataset and random weights made."""
    root = tmp_path_factory.mktemp("project")
    copy_code(root)
    write_small_params(root, nproc=1)
    for stage in ("download", "prepare", "weights"):
        run_module(root, f"stages.{stage}")
    return root


def test_two_processes_compute_the_single_process_steps(project: Path):
    single_metrics, single_history, single_stdout = train_with(project, EXACT_STRATEGY, nproc=1)
    parallel_metrics, parallel_history, parallel_stdout = train_with(project, EXACT_STRATEGY, nproc=2)
    assert "x 2" in parallel_stdout  # the banner names the process count, printed by rank 0 only:
    assert parallel_stdout.count("parameters train") == single_stdout.count("parameters train") >= 1  # once a run
    assert [row["epoch"] for row in parallel_history] == [row["epoch"] for row in single_history] == [1, 2]
    for single, parallel in zip(single_history, parallel_history):
        assert parallel["lr"] == single["lr"]
        assert parallel["train_loss"] == pytest.approx(single["train_loss"], rel=LOSS_RTOL)
        assert parallel["val_loss"] == pytest.approx(single["val_loss"], rel=LOSS_RTOL)
        assert abs(parallel["val_top1"] - single["val_top1"]) <= TOP1_ATOL
    assert parallel_metrics["test_loss"] == pytest.approx(single_metrics["test_loss"], rel=LOSS_RTOL)
    assert parallel_metrics["trainable_params"] == single_metrics["trainable_params"]
    assert parallel_metrics["train_flops"] == single_metrics["train_flops"]  # the same work, split over ranks


def test_two_processes_train_batchnorm_layers_and_gather_the_test_predictions(project: Path):
    strategy = BATCHNORM_STRATEGY
    single_metrics, single_history, _ = train_with(project, strategy, nproc=1)
    parallel_metrics, parallel_history, _ = train_with(project, strategy, nproc=2)
    assert [row["epoch"] for row in parallel_history] == [row["epoch"] for row in single_history]
    assert all(np.isfinite(row["train_loss"]) for row in parallel_history)
    assert parallel_metrics["trainable_params"] == single_metrics["trainable_params"]
    assert parallel_metrics["train_flops"] == single_metrics["train_flops"]
    # Every rank's share of the test set gathered back in test-set order: the rows score what metrics.json says.
    with (
        np.load(project / paths.predictions_path(strategy, 0)) as saved,
        np.load(project / paths.PREPARED_PATH) as data,
    ):
        assert np.array_equal(saved["labels"], data["test_labels"])
        top1 = float(np.mean(saved["top5"][:, 0] == saved["labels"]))
    assert top1 == pytest.approx(parallel_metrics["test_top1"], abs=1e-6)  # metrics.json rounds to 6 digits
