"""The decode benchmark still runs against the current code and reports every number (not judged here)."""

import json
import math
import os
import subprocess
import sys

from transfer import paths

KEYS = (
    "images",
    "size",
    "workers",
    "plain_seconds",
    "project_seconds",
    "speedup_vs_plain_pil",
    "peak_bytes",
    "arrays_bytes",
    "peak_beyond_arrays_bytes",
    "mean_abs_pixel_difference",
)
# A hang guard, not a timed assertion: 64 photos are written and decoded twice in a few seconds.
TIMEOUT_SECONDS = 300


def test_decode_benchmark_prints_every_number_as_its_last_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT)}
    command = [sys.executable, "-m", "benchmarks.decode_speed", "--images", "64", "--size", "32"]
    result = subprocess.run(
        [*command, "--folder", str(tmp_path / "photos")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout.splitlines()[-1])
    assert set(KEYS) <= set(numbers)
    assert numbers["images"] == 64 and numbers["arrays_bytes"] == 64 * 32 * 32 * 3
    for key in ("plain_seconds", "project_seconds", "speedup_vs_plain_pil", "peak_bytes"):
        assert math.isfinite(numbers[key]) and numbers[key] > 0, key
    # The same photos at the same size: draft-mode decoding differs from the plain loop by a few levels only.
    assert numbers["mean_abs_pixel_difference"] < 10
    assert len(list((tmp_path / "photos" / "train").rglob("*.jpg"))) == 64
