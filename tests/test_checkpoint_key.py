"""A checkpoint resumes only with the code that wrote it: its key hashes the library, not only stages/."""

import subprocess
import sys

import transfer.runs
from transfer import paths

# In a fresh process, as the train stage runs: `python -m stages.train` is loaded as __main__.
KEY_FILES_OF_THE_TRAIN_STAGE = """
import runpy, sys
sys.argv = ["stages.train", "--help"]
try:
    runpy.run_module("stages.train", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
from transfer.runs import project_code_files
print("\\n".join(str(path) for path in project_code_files()))
"""


def test_key_covers_the_library_modules_a_run_uses():
    files = set(transfer.runs.project_code_files())
    for module in ("recipe", "runs", "model", "augment", "batches", "data", "context"):
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
    assert str(paths.PROJECT_ROOT / "transfer" / "recipe.py") in files
