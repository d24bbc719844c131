"""A killed train stage resumes from its last completed epoch and ends with the same bytes.

It trains two seeds and is killed during the second: the first seed's finished run must be taken
from its checkpoint, not trained again.
"""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.project import copy_code, merge, params_tree, write_params
from transfer import paths

pytestmark = pytest.mark.pipeline  # every test here trains through a stage process or DVC

STRATEGY = "deep"
EPOCHS = 2
SEEDS = [0, 1]
SMALL_RUN = {  # under a second an epoch on 2 CPU cores: long enough for the signal to land mid-epoch
    "data": {"val_size": 200, "synthetic": {"train_size": 800, "test_size": 200}},
    "strategy": {"epochs": EPOCHS, "batch_size": 64, "seeds": SEEDS},
}
KILLED_SEED = SEEDS[-1]
CHECKPOINT_WAIT_SECONDS = 120


def run_stage(project: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """python -m stages.<...> in the project copy."""
    result = subprocess.run(
        [sys.executable, "-m", *arguments], cwd=project, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        pytest.fail(f"{arguments} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def write_small_params(project: Path, **strategy_changes) -> None:
    """The test params for a small synthetic run with two seeds, with strategy_changes applied."""
    write_params(project, params_tree(merge(SMALL_RUN, {"strategy": strategy_changes})))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with data and weights made, ready to run the train stage."""
    root = tmp_path_factory.mktemp("project")
    copy_code(root)
    write_small_params(root)
    for stage in ("download", "prepare", "weights"):
        run_stage(root, f"stages.{stage}")
    return root


def outputs(project: Path) -> dict[str, bytes]:
    """The bytes of the stage's reproducible outputs."""
    reproducible = [paths.metrics_path(STRATEGY), paths.history_path(STRATEGY), paths.confusion_path(STRATEGY)]
    per_seed = sorted((project / paths.seeds_dir(STRATEGY)).rglob("*.json"))
    return {
        str(path): (project / path).read_bytes() for path in reproducible + per_seed if path.name != paths.TIMING_FILE
    }


def clear_outputs(project: Path) -> None:
    """Remove results and checkpoints, as DVC removes outputs before a rerun."""
    for folder in (paths.RESULTS_DIR, paths.CHECKPOINTS_DIR):
        shutil.rmtree(project / folder, ignore_errors=True)
    (project / paths.model_path(STRATEGY)).unlink(missing_ok=True)


def start_and_kill_after_first_epoch(project: Path, signal_number: int) -> subprocess.CompletedProcess:
    """Start training, send signal_number once the last seed's first epoch is checkpointed, wait for the exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.train", STRATEGY],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A pytest-xdist worker runs with SIGINT ignored, and a child inherits that: Python then installs no
        # KeyboardInterrupt handler and Ctrl-C would do nothing. A user's shell starts the stage with the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        checkpoint = project / paths.checkpoint_path(STRATEGY, KILLED_SEED)
        deadline = time.monotonic() + CHECKPOINT_WAIT_SECONDS
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.exists(), "no checkpoint appeared"
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a no-op once it exited; never leave a training process behind a failed test
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def uninterrupted(project: Path) -> dict[str, bytes]:
    """Outputs of a run that nobody interrupted."""
    clear_outputs(project)
    run_stage(project, "stages.train", STRATEGY)
    assert not (project / paths.checkpoint_dir(STRATEGY)).exists(), "a finished run leaves no checkpoint"
    return outputs(project)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_killed_run_resumes_to_identical_results(project: Path, uninterrupted: dict[str, bytes], signal_number: int):
    clear_outputs(project)
    killed = start_and_kill_after_first_epoch(project, signal_number)
    assert killed.returncode == 130
    assert "interrupted; no results were written" in killed.stderr
    assert "run the same dvc command again to resume" in killed.stderr
    assert "Traceback" not in killed.stderr
    assert not (project / paths.results_dir(STRATEGY)).exists()
    assert not (project / paths.model_path(STRATEGY)).exists()

    resumed = run_stage(project, "stages.train", STRATEGY)
    assert f"seed {SEEDS[0]}: resuming after epoch {EPOCHS} " in resumed.stdout, (
        "the finished seed is not trained again"
    )
    assert f"seed {KILLED_SEED}: resuming after epoch 1 " in resumed.stdout
    assert f"seed {KILLED_SEED} epoch 1/" not in resumed.stdout
    assert outputs(project) == uninterrupted
    assert not (project / paths.checkpoint_dir(STRATEGY)).exists()


def test_checkpoint_of_other_params_is_not_resumed(project: Path):
    clear_outputs(project)
    start_and_kill_after_first_epoch(project, signal.SIGTERM)
    write_small_params(project, lr=0.02)
    try:
        rerun = run_stage(project, "stages.train", STRATEGY)
    finally:
        write_small_params(project)
    assert "ignoring checkpoint" in rerun.stdout and "other params, data or code" in rerun.stdout
    assert "resuming" not in rerun.stdout
    assert [row["epoch"] for row in yaml.safe_load((project / paths.history_path(STRATEGY)).read_text())] == list(
        range(1, EPOCHS + 1)
    )


def test_power_loss_mid_write_leaves_no_partial_checkpoint(project: Path):
    clear_outputs(project)
    killed = start_and_kill_after_first_epoch(project, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    checkpoint_names = {paths.checkpoint_path(STRATEGY, seed).name for seed in SEEDS}
    leftovers = [
        path.name for path in (project / paths.checkpoint_dir(STRATEGY)).iterdir() if path.name not in checkpoint_names
    ]
    # A SIGKILL can land inside a save; its temporary file may stay, but never under the real name.
    killed_name = paths.checkpoint_path(STRATEGY, KILLED_SEED).name
    assert all(name.startswith(f".{killed_name}.") and name.endswith(".tmp") for name in leftovers)
    resumed = run_stage(project, "stages.train", STRATEGY)
    assert "resuming after epoch" in resumed.stdout
    assert not (project / paths.checkpoint_dir(STRATEGY)).exists()
