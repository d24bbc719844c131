"""The benchmark still runs against the current code and reports every ratio (its numbers are not judged here)."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.project import params_tree, write_params
from transfer import paths
from transfer.compute import precision

RATIOS = (
    "train_step_vs_bare",
    "data_vs_model",
    "shallow_vs_scratch_epoch",
    "cached_shallow_vs_scratch_epoch",
    "pipeline_vs_torchvision_loader",
    "bf16_vs_fp32",
    "deep_vs_scratch_epoch",
    "auto_vs_best_precision",
)


@pytest.mark.pipeline  # trains every contender in a benchmark process: minutes
def test_benchmark_prints_every_ratio_as_its_last_line(tmp_path):
    write_params(tmp_path, params_tree())  # the benchmark reads params.yaml from its working directory
    # A stored precision choice, as a second run on this machine would find: the test never times the probe.
    channels_last = params_tree()["compute"]["channels_last"]
    stored = {precision.machine_key(channels_last): {"precision": "fp32"}}
    (tmp_path / "cache" / "cifar100-resnet18").mkdir(parents=True)
    (tmp_path / "cache" / "cifar100-resnet18" / "precision.json").write_text(json.dumps(stored))
    env = {
        **os.environ,
        "PYTHONPATH": str(paths.PROJECT_ROOT),  # the project's code, run from the copy
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # precision auto's measured choice, never the user's
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            # The smallest run that still times every contender: 2 steps of 16 images each. bf16 is emulated
            # (slowly) on CPUs without bf16 instructions, and every contender is built and warmed up once.
            "--images",
            "32",
            "--batch-size",
            "16",
            "--skip-rss",
            "--repeats",
            "1",
            "--workers",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # guards a hang only: about 1-3 min here, more on a loaded CI machine
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for ratio in RATIOS:
        assert report[ratio] > 0, ratio
    assert report["auto_vs_best_precision"] <= 1  # auto's mode is one of the measured ones
    assert report["peak_rss_mb"] is None  # skipped
    assert report["images"] == 32
    assert report["batch_size"] == 16
