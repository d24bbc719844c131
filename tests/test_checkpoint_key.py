"""A checkpoint resumes only with the code that wrote it: its key hashes the library, not only stages/."""

import subprocess
import sys
from pathlib import Path

import torch

import transfer.training.runs
from transfer import paths
from transfer.training.checkpoint import EpochCheckpoints, FitProgress

# In a fresh process, the key's files listed while stages.train runs as __main__ (as `python -m stages.train`
# runs it): at its --help exit, before runpy puts the original __main__ back (under coverage, nothing else
# would leave stages/train.py among the loaded modules).
KEY_FILES_OF_THE_TRAIN_STAGE = """
import argparse, runpy, sys
from transfer.training.runs import project_code_files
def exit_listing_files(parser, status=0, message=None):
    print("\\n".join(str(path) for path in project_code_files()))
    raise SystemExit(status)
argparse.ArgumentParser.exit = exit_listing_files
sys.argv = ["stages.train", "--help"]
try:
    runpy.run_module("stages.train", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
"""


def test_key_covers_the_library_modules_a_run_uses():
    files = set(transfer.training.runs.project_code_files())
    for module in (
        "training/recipe",
        "training/runs",
        "models/network",
        "training/augment",
        "training/batches",
        "training/prepared_data",
        "training/context",
    ):
        assert paths.PROJECT_ROOT / "transfer" / f"{module}.py" in files, module


def test_key_covers_the_stage_module_run_as_main():
    result = subprocess.run(
        [sys.executable, "-c", KEY_FILES_OF_THE_TRAIN_STAGE],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = result.stdout.split("\n")
    assert str(paths.PROJECT_ROOT / "stages" / "train.py") in files
    assert str(paths.PROJECT_ROOT / "transfer" / "training" / "recipe.py") in files


def small_checkpoint(tmp_path: Path, key: str = "key-a") -> tuple[EpochCheckpoints, torch.nn.Module, FitProgress]:
    """A checkpoint after one SGD-with-momentum step of a small network, as fit_phase saves it."""
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 32)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    progress = FitProgress(history=[{"epoch": 1}], best_epoch=1)
    progress.best_state = {name: value.detach().clone() for name, value in net.state_dict().items()}
    checkpoints = EpochCheckpoints(tmp_path / "seed_0.pt", key)
    checkpoints.save(net, optimizer, scheduler, progress)
    return checkpoints, net, progress


def test_finished_seed_keeps_no_optimizer_state_and_still_resumes(tmp_path: Path):
    checkpoints, net, progress = small_checkpoint(tmp_path)
    full_size = checkpoints.path.stat().st_size
    checkpoints.keep_finished(progress)
    # weights + momentum + best weights before; the best weights alone after (stored once though named twice)
    assert checkpoints.path.stat().st_size < 0.6 * full_size
    resumed, saved = EpochCheckpoints(checkpoints.path, "key-a").load(torch.nn.Linear(64, 32))
    assert saved == {"optimizer": {}, "scheduler": {}}
    assert resumed.completed_epochs == 1
    torch.testing.assert_close(resumed.best_state, progress.best_state, rtol=0, atol=0)


def test_stale_checkpoint_is_removed_with_a_message(tmp_path: Path, capsys):
    checkpoints, _, _ = small_checkpoint(tmp_path, key="key-a")
    progress, saved = EpochCheckpoints(checkpoints.path, "key-b").load(torch.nn.Linear(64, 32))
    assert progress.completed_epochs == 0 and saved == {}
    assert "other params, data or code; removed" in capsys.readouterr().out
    assert not checkpoints.path.exists()
