"""How contenders are timed (interleaved repeats, the fastest counts), and the peak memory of the real train stage."""

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import yaml

from transfer.paths import PARAMS_PATH, PROJECT_ROOT

WARMUP_STEPS = 2  # untimed steps before each contender's first timed epoch
RSS_EPOCHS = 1  # epochs of the train stage whose peak memory is measured
RSS_CODE = ("stages", "transfer")  # what a stage imports: copied into the temporary project
LOG_TAIL_CHARS = 2000  # of a failed stage's output, shown in the error
# Runs argv[2:] with its output in the file argv[1] and prints "<its ru_maxrss> <its exit code>". A child
# inherits the peak RSS of the process it was forked from (Linux keeps the old memory's high-water mark
# across exec), so the stage must be started by this small fresh process, not by this benchmark's big one.
RSS_LAUNCHER = """
import os, subprocess, sys
with open(sys.argv[1], "w") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""

Contender = Callable[[], int]  # runs one timed pass, returns the images it processed
Key = TypeVar("Key", bound=Hashable)  # what names a contender


@dataclass(frozen=True)
class Timing:
    """Images one run of a contender processes, and the seconds of each timed repeat."""

    images: int
    seconds: list[float]

    @property
    def best(self) -> float:
        """Seconds of the fastest repeat."""
        return min(self.seconds)

    @property
    def images_per_second(self) -> float:
        """Throughput of the fastest repeat."""
        return self.images / self.best


@dataclass(frozen=True)
class PeakRss:
    """Peak resident memory of one train stage run, and the seconds it took."""

    strategy: str
    mib: float
    seconds: float


# ---------------------------------------------------------------------------------------------
# Timing


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(contender: Contender, device: torch.device) -> tuple[int, float]:
    """(images, seconds) of one run of contender, device work included."""
    synchronize(device)
    started = time.perf_counter()
    images = contender()
    synchronize(device)
    return images, time.perf_counter() - started


def measure(contenders: dict[Key, Contender], repeats: int, device: torch.device) -> dict[Key, Timing]:
    """Time every contender repeats times, interleaved (round-robin) so that outside load hits all alike."""
    images: dict[Key, int] = {}
    seconds: dict[Key, list[float]] = {key: [] for key in contenders}
    for _ in range(repeats):
        for key, contender in contenders.items():
            images[key], elapsed = timed(contender, device)
            seconds[key].append(elapsed)
    return {key: Timing(images[key], seconds[key]) for key in contenders}


# ---------------------------------------------------------------------------------------------
# Peak memory of the real train stage


def write_rss_params(source: Path, destination: Path, device: str) -> None:
    """params.yaml with synthetic data and random weights at the default data sizes, one epoch."""
    tree = yaml.safe_load(source.read_text())
    tree["data"]["source"] = "synthetic"
    tree["model"]["weights"] = "random"
    tree["compute"]["device"] = device
    tree["strategy"]["epochs"] = RSS_EPOCHS
    for entry in tree["strategies"].values():
        entry.pop("epochs", None)  # a per-strategy override would undo the one epoch
    destination.write_text(yaml.safe_dump(tree, sort_keys=False))


def stage_failure(command: list[str], exit_code: int, output: str) -> RuntimeError:
    """The error of a failed stage command, with its output's tail."""
    return RuntimeError(f"{' '.join(command[1:])} failed ({exit_code}): {output[-LOG_TAIL_CHARS:]}")


def run_command(command: list[str], project: Path) -> None:
    """Run a stage command in project; RuntimeError with its output's tail if it fails."""
    result = subprocess.run(command, cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise stage_failure(command, result.returncode, result.stdout + result.stderr)


def child_peak_rss_mib(command: list[str], project: Path) -> float:
    """Run command in project through RSS_LAUNCHER and return the command's own peak RSS in MiB."""
    log_path = project / "stage.log"
    launched = subprocess.run(
        [sys.executable, "-c", RSS_LAUNCHER, str(log_path), *command],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    max_rss, exit_code = map(int, launched.stdout.split())
    if exit_code != 0:
        raise stage_failure(command, exit_code, log_path.read_text())
    kib = max_rss / 1024 if sys.platform == "darwin" else max_rss  # macOS reports bytes, Linux KiB
    return kib / 1024


def peak_rss(strategy: str, device: str) -> PeakRss:
    """Peak RSS of `python -m stages.train strategy` in a temporary copy, after download, prepare and weights."""
    with tempfile.TemporaryDirectory(prefix="benchmark-rss-") as temp:
        project = Path(temp)
        for package in RSS_CODE:
            shutil.copytree(PROJECT_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
        write_rss_params(PROJECT_ROOT / PARAMS_PATH, project / PARAMS_PATH, device)
        for stage in ("download", "prepare", "weights"):
            run_command([sys.executable, "-m", f"stages.{stage}"], project)
        started = time.perf_counter()
        mib = child_peak_rss_mib([sys.executable, "-m", "stages.train", strategy], project)
        return PeakRss(strategy, mib, time.perf_counter() - started)
