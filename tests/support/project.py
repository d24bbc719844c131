"""Test-owned params and throwaway copies of the project, shared by the test files.

Tests never read the committed params.yaml for what they assert: a user may commit any valid
values and any set of strategies. They start from TEST_PARAMS (complete, explicit, small) and
change what they need with `params_tree(changes)`.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transfer import paths

# Everything a project copy needs to run its stages and `dvc` commands (paths relative to the root).
CODE_PATHS = ("stages", "transfer")  # the packages stage commands import
PROJECT_PATHS = (*CODE_PATHS, ".dvc", "dvc.yaml", ".dvcignore", ".gitignore", "vendor", str(paths.DEFAULT_IMAGE_FOLDER))
# Never copied: DVC's local cache and state, a user's local config, bytecode.
IGNORED_IN_COPY = shutil.ignore_patterns("__pycache__", "cache", "tmp", "config.local")
COMMAND_TIMEOUT_SECONDS = 600
# A guard against hangs, not a timed assertion: well above what a command that trains every strategy of
# TEST_PARAMS takes on a 2-core CPU shared with other jobs.
PIPELINE_TIMEOUT_SECONDS = 1800
# The target of a `dvc exp run` whose checks end at the report: DVC runs the plots stage and every stage it
# depends on, but not the export stages (about 5 s a retrained strategy, process start-up mostly), which
# the full `dvc repro` of each pipeline test covers.
EXPERIMENT_TARGET = "plots"
# The e2e repository's `dvc repro` (tests/conftest.py) reads this strategy's seed history while it trains.
WATCHED_STRATEGY = "scratch"

# A complete, valid params tree for a run of seconds per strategy: synthetic data in the real
# archive's format, random stand-in weights, tiny sizes. Its strategies use every kind of strategy
# key a user's params.yaml may (tests/test_test_params.py checks the committed defaults' keys are
# among them): phases, a strategy's own lr and lr list, augment false, a stem. The stem is the
# default imagenet one, named: the cifar stem costs ~16x the FLOPs, and tests/test_model.py covers it.
TEST_PARAMS = {
    "data": {
        "dataset": "cifar100",
        "source": "synthetic",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": str(paths.DEFAULT_IMAGE_FOLDER),  # read only by data.dataset: folder (tests/test_image_folder.py)
        "stored_size": 32,
        "test_size": 300,
        "val_size": 200,
        "split_seed": 0,
        "train_sizes": [],  # no smaller training sets: tests/test_dataset_pipelines.py trains some (CIFAR-10)
        "subset_min_steps": 20,
        "image_size": 32,
        "augment": {"crop_padding": 4, "horizontal_flip": True},
        "synthetic": {"train_size": 1200, "test_size": 300, "seed": 0},
    },
    "model": {
        "arch": "resnet18",
        "weights": "random",
        "random_weights_seed": 1,
        "head": {"hidden_size": 0, "dropout": 0.0},
    },
    "compute": {
        "device": "cpu",
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "nproc": 1,
        "eval_batch_size": 256,
    },
    "strategy": {
        "seeds": [0],
        "epochs": 2,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.05,
        "lr_factors": [1],  # as the defaults: no search unless a strategy lists rates
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "scheduler": "cosine",
        "step_epochs": 5,
        "gamma": 0.1,
    },
    "report": {"equivalence_margin": 0.01},
    "strategies": {
        "shallow": {"pretrained": True, "train_layers": [], "augment": True},
        "deep": {"pretrained": True, "train_layers": ["layer4"], "augment": True},
        "scratch": {"pretrained": False, "train_layers": "all", "augment": True, "stem": "imagenet"},
        # The cached-features path, with an lr list: two candidates on the first seed, the better on validation
        # kept. The list sits on the cheapest strategy because every candidate is a training run.
        "probe": {"pretrained": True, "train_layers": [], "augment": False, "lr": [0.05, 0.2]},
        "lpft": {  # phases, each epochs and the second its own lr, as the committed lpft
            "pretrained": True,
            "augment": True,
            "lr": 0.05,
            "phases": [{"train_layers": [], "epochs": 1}, {"train_layers": "all", "epochs": 1, "lr": 0.005}],
        },
    },
}


def merge(tree: dict, changes: dict) -> dict:
    """A copy of tree with changes applied, recursing into nested mappings; neither argument is modified."""
    merged = copy.deepcopy(tree)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def params_tree(changes: dict | None = None) -> dict:
    """TEST_PARAMS with changes merged in (nested keys as nested dicts); a fresh copy every call."""
    return merge(TEST_PARAMS, changes or {})


def write_params(root: Path, tree: dict) -> None:
    """Write tree as root/params.yaml."""
    (root / paths.PARAMS_PATH).write_text(yaml.safe_dump(tree, sort_keys=False))


def copy_code(root: Path) -> None:
    """The stages and the library they import, copied to root (enough to run `python -m stages.<name>` there)."""
    for package in CODE_PATHS:
        shutil.copytree(paths.PROJECT_ROOT / package, root / package, ignore=IGNORED_IN_COPY, dirs_exist_ok=True)


def copy_project(root: Path, tree: dict) -> Path:
    """The project's stages and pipeline files copied to root, with tree as its params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_PATHS:
        source, target = paths.PROJECT_ROOT / name, root / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED_IN_COPY, dirs_exist_ok=True)
        else:
            shutil.copy(source, target)
    write_params(root, tree)
    return root


class Repo:
    """A throwaway git + DVC repository holding a copy of the project."""

    def __init__(self, root: Path):
        self.root = root
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": venv_bin + os.pathsep + os.environ["PATH"],  # stage commands run `python -m ...`
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "DVC_NO_ANALYTICS": "1",
        }

    @classmethod
    def create(cls, root: Path, tree: dict) -> "Repo":
        """A new repository at root with the project and params tree, committed."""
        repo = cls(copy_project(root, tree))
        repo.run("git", "init", "-q")
        repo.run("git", "add", "-A")
        repo.run("git", "commit", "-qm", "project")
        return repo

    def run(self, *command: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
        """Run a command in the repository; fail the test with its output if it fails."""
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def run_to_file(self, *command: str, output) -> None:
        """Run a command that leaves processes behind (e.g. `dvc queue start`), its output to an open file.

        A pipe would keep the call waiting until every process holding it ends; a file does not.
        """
        executable = str(Path(sys.executable).parent / command[0]) if command[0] == "dvc" else command[0]
        result = subprocess.run(
            [executable, *command[1:]],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {result.returncode}; its output is in {output.name}")

    def dvc(self, *arguments: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
        """Run the venv's dvc."""
        return self.run(str(Path(sys.executable).parent / "dvc"), *arguments, timeout=timeout)

    def read_json(self, path: Path) -> object:
        """Parsed JSON file of the repository."""
        return json.loads((self.root / path).read_text())

    def params(self) -> dict:
        """The repository's params.yaml as a tree."""
        return yaml.safe_load((self.root / paths.PARAMS_PATH).read_text())

    def strategies(self) -> list[str]:
        """The strategy names the repository's params.yaml defines, in order."""
        return list(self.params()["strategies"])

    def metrics(self) -> dict[str, dict]:
        """metrics.json of every strategy, by strategy."""
        return {name: self.read_json(paths.metrics_path(name)) for name in self.strategies()}

    def head(self) -> str:
        """The commit HEAD points at."""
        return self.run("git", "rev-parse", "HEAD").strip()

    def reset_to(self, commit: str) -> None:
        """Workspace, params and outputs exactly as committed at commit (experiments stay listed)."""
        self.run("git", "reset", "-q", "--hard", commit)
        self.run("git", "clean", "-qfd")  # untracked, not ignored: DVC outputs come back from the cache below
        self.dvc("checkout", "--force")


def processes_under(root: Path) -> list[str]:
    """Command lines of the running processes whose working directory lies in root (Linux /proc)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            cwd = (process / "cwd").resolve(strict=True)
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if cwd == root.resolve() or root.resolve() in cwd.parents:
            found.append(f"{process.name}: {command}")
    return found
