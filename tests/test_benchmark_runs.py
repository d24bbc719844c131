"""The benchmark still runs against the current code and reports every ratio (its numbers are not judged here)."""

import json
import subprocess
import sys

from stages import paths

RATIOS = (
    "train_step_vs_bare",
    "data_vs_model",
    "shallow_vs_scratch_epoch",
    "cached_shallow_vs_scratch_epoch",
    "pipeline_vs_torchvision_loader",
)


def test_benchmark_prints_every_ratio_as_its_last_line():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            "--images",
            "256",
            "--skip-rss",
            "--repeats",
            "1",
            "--workers",
            "0",
        ],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for ratio in RATIOS:
        assert report[ratio] > 0, ratio
    assert report["peak_rss_mb"] is None  # skipped
    assert report["images"] == 256
