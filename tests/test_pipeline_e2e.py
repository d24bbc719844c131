"""End to end through the real dvc commands, on a small synthetic archive and random backbone weights.

Copies the project into a temporary git repository, then: dvc repro, dvc exp run -S, dvc metrics
diff, dvc plots diff, dvc status. The steps share one repository, so they run in file order.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from stages import paths, plots

PROJECT_FILES = (
    "params.yaml",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots/linear_band.json",
    ".dvc/plots/cost_scatter.json",
)
STRATEGIES = ("shallow", "deep", "scratch")
CHANCE_TOP1 = 0.01  # 100 classes
SMALL_RUN = {  # about 15 s of training per strategy on 2 CPU cores
    "data": {"source": "synthetic", "val_size": 500, "synthetic": {"train_size": 3000, "test_size": 500}},
    "model": {"weights": "random"},
    "strategy": {"epochs": 3},
}
OTHER_LR = 0.03
SCORES = (
    "test_top1",
    "test_top1_coarse",
    "test_top5",
    "test_loss",
    "best_val_top1",
    "best_epoch",
)  # averaged over seeds
HISTORY_COLUMNS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
QUEUE_TIMEOUT_SECONDS = 600


def merge(tree: dict, changes: dict) -> dict:
    """tree with changes applied recursively (nested mappings merge, other values replace)."""
    merged = dict(tree)
    for key, value in changes.items():
        merged[key] = merge(tree[key], value) if isinstance(value, dict) else value
    return merged


def experiment_name(exp_run_output: str) -> str:
    """The name `dvc exp run` gave its experiment."""
    match = re.search(r"Ran experiment\(s\): (\S+)", exp_run_output)
    assert match, exp_run_output
    return match.group(1)


class Repo:
    """A throwaway git + DVC repository holding a copy of the project."""

    def __init__(self, root: Path):
        self.root = root
        self.experiments: dict[str, str] = {}  # what each `dvc exp run` changed -> its name
        self.experiment_metrics: dict[str, dict] = {}  # the same key -> metrics() right after it ran
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

    def run(self, *command: str) -> str:
        """Run a command in the repository; fail the test with its output if it fails."""
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def dvc(self, *arguments: str) -> str:
        """Run the venv's dvc."""
        return self.run(str(Path(sys.executable).parent / "dvc"), *arguments)

    def read_json(self, path: Path) -> object:
        """Parsed JSON file of the repository."""
        return json.loads((self.root / path).read_text())

    def locked_hash(self, stage: str, output: Path) -> str:
        """The MD5 dvc.lock records for one output of a stage."""
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        (entry,) = [out for out in lock["stages"][stage]["outs"] if out["path"] == str(output)]
        return entry["md5"]

    def metrics(self) -> dict[str, dict]:
        """metrics.json of every strategy, by strategy."""
        return {name: self.read_json(paths.metrics_path(name)) for name in STRATEGIES}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    """The project copied into a fresh git repository, with params for a small synthetic run, committed."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(paths.PROJECT_ROOT / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths.PROJECT_ROOT / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(merge(params, SMALL_RUN), sort_keys=False))
    repo = Repo(root)
    repo.run("git", "init", "-q")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "project")
    return repo


def test_repro_trains_every_strategy_and_learns(repo: Repo):
    repo.dvc("repro")
    metrics = repo.metrics()
    for name in STRATEGIES:
        assert set(metrics[name]) == {
            *SCORES,
            *(f"{score}_std" for score in SCORES),
            "trainable_params",
            "total_params",
            "train_flops",  # the same for every seed: no _std
            "lr",  # the (chosen) learning rate, the same for every seed: no _std
            "num_seeds",
        }
        # A single lr is a search of one candidate, recorded like any other.
        lr_search = repo.read_json(paths.lr_search_path(name))
        assert [row["lr"] for row in lr_search] == [metrics[name]["lr"]]
        assert lr_search[0]["best_val_top1"] == metrics[name]["best_val_top1"]
        assert metrics[name]["num_seeds"] == 1 and all(metrics[name][f"{score}_std"] == 0.0 for score in SCORES)
        # A prediction in the right class is in the right superclass too.
        assert 0.0 <= metrics[name]["test_top1"] <= metrics[name]["test_top1_coarse"] <= 1.0
        assert metrics[name]["test_top1"] <= metrics[name]["test_top5"] <= 1.0
        history = repo.read_json(paths.history_path(name))
        assert [row["epoch"] for row in history] == [1, 2, 3]
        assert set(history[0]) == {"epoch", "lr"} | {
            f"{column}{suffix}" for column in HISTORY_COLUMNS for suffix in ("", "_min", "_max")
        }
        assert metrics[name]["best_val_top1"] == round(max(row["val_top1"] for row in history), 6)
        confusion = torch.tensor(repo.read_json(paths.confusion_path(name))["counts"])
        assert confusion.sum() == SMALL_RUN["data"]["synthetic"]["test_size"]
        assert (confusion.diagonal().sum() / confusion.sum()).item() == pytest.approx(
            metrics[name]["test_top1"], abs=2e-3
        )
        checkpoint = torch.load(repo.root / paths.model_path(name), map_location="cpu", weights_only=True)
        assert checkpoint["strategy"] == name
        assert checkpoint["config"]["strategy"]["training"]["epochs"] == 3
        assert len(checkpoint["class_names"]) == 100
    # Learning happened where the network can learn: well above the 1% of guessing.
    assert metrics["scratch"]["test_top1"] > 10 * CHANCE_TOP1
    assert metrics["deep"]["test_top1"] > 10 * CHANCE_TOP1
    assert metrics["shallow"]["trainable_params"] == 512 * 100 + 100
    assert metrics["scratch"]["trainable_params"] == metrics["scratch"]["total_params"]
    assert (
        metrics["shallow"]["trainable_params"]
        < metrics["deep"]["trainable_params"]
        < metrics["scratch"]["trainable_params"]
    )
    for plot_file in [plots.FINAL_SCORES_PATH, plots.REPORT_PATH, *plots.figure_paths(list(STRATEGIES))]:
        assert (repo.root / plot_file).is_file(), plot_file
    for name in STRATEGIES:
        assert (repo.root / plots.CURVES_DIR / f"{name}.json").is_file() and (
            repo.root / plots.confusion_data_path(name)
        ).is_file()
    assert "| deep | yes | layer4 + head |" in (repo.root / plots.REPORT_PATH).read_text()


def test_second_repro_reruns_nothing(repo: Repo):
    output = repo.dvc("repro")
    assert "Running stage" not in output
    assert "Data and pipelines are up to date" in repo.dvc("status")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "baseline run")


def test_forced_rerun_reproduces_the_same_bytes(repo: Repo):
    before = {
        path: (repo.root / path).read_bytes() for path in (paths.metrics_path("scratch"), paths.history_path("scratch"))
    }
    model_hash_before = repo.locked_hash("train@scratch", paths.model_path("scratch"))
    predictions_hash_before = repo.locked_hash("train@scratch", paths.predictions_dir("scratch"))
    output = repo.dvc("repro", "--force", "--single-item", "train@scratch")
    assert "Running stage 'train@scratch'" in output
    assert {path: (repo.root / path).read_bytes() for path in before} == before
    assert repo.locked_hash("train@scratch", paths.model_path("scratch")) == model_hash_before
    assert repo.locked_hash("train@scratch", paths.predictions_dir("scratch")) == predictions_hash_before


def test_exp_run_with_new_lr_retrains_only(repo: Repo):
    baseline = repo.metrics()
    output = repo.dvc("exp", "run", "-S", f"strategy.lr={OTHER_LR}")
    repo.experiments["lr"] = experiment_name(output)
    for stage in ("download", "prepare", "weights"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    for stage in ("train@shallow", "train@deep", "train@scratch", "plots"):
        assert f"Running stage '{stage}'" in output
    changed = repo.metrics()
    repo.experiment_metrics["lr"] = changed
    for name in STRATEGIES:
        assert changed[name]["test_loss"] != baseline[name]["test_loss"], name
        assert repo.read_json(paths.history_path(name))[0]["lr"] == OTHER_LR
    diff = json.loads(repo.dvc("metrics", "diff", "--json"))  # HEAD (baseline) against the workspace
    for name in STRATEGIES:
        test_loss = diff[str(paths.metrics_path(name))]["test_loss"]
        assert (test_loss["old"], test_loss["new"]) == (baseline[name]["test_loss"], changed[name]["test_loss"])


def test_changing_one_strategy_reruns_only_its_stage_and_plots(repo: Repo):
    output = repo.dvc("exp", "run", "-S", "strategies.deep.train_layers=[layer3,layer4]")
    repo.experiments["deep_layers"] = experiment_name(output)
    assert "Running stage 'train@deep'" in output and "Running stage 'plots'" in output
    for stage in ("download", "prepare", "weights", "train@shallow", "train@scratch"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert "| deep | yes | layer3 + layer4 + head |" in (repo.root / plots.REPORT_PATH).read_text()


def test_new_override_key_for_one_strategy(repo: Repo):
    output = repo.dvc("exp", "run", "-S", "+strategies.scratch.lr=0.05")
    repo.experiments["scratch_lr"] = experiment_name(output)
    assert "Running stage 'train@scratch'" in output and "Running stage 'plots'" in output
    for stage in ("train@shallow", "train@deep"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert repo.read_json(paths.history_path("scratch"))[0]["lr"] == 0.05


def test_more_seeds_for_one_strategy_report_mean_and_spread(repo: Repo):
    one_seed = {
        "metrics": repo.read_json(paths.metrics_path("shallow")),
        "history": repo.read_json(paths.history_path("shallow")),
    }
    output = repo.dvc("exp", "run", "-S", "+strategies.shallow.seeds=[0,1,2]")
    repo.experiments["shallow_seeds"] = experiment_name(output)
    assert "Running stage 'train@shallow'" in output and "Running stage 'plots'" in output
    for stage in ("train@deep", "train@scratch"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert sorted(path.name for path in (repo.root / paths.seeds_dir("shallow")).iterdir()) == [
        "seed_0",
        "seed_1",
        "seed_2",
    ]
    per_seed = [repo.read_json(paths.seed_dir("shallow", seed) / paths.METRICS_FILE) for seed in (0, 1, 2)]
    # Seed 0 is the same run as before: adding seeds never changes the first one.
    assert per_seed[0] == {key: value for key, value in one_seed["metrics"].items() if key in per_seed[0]}
    assert repo.read_json(paths.seed_dir("shallow", 0) / paths.HISTORY_FILE) == [
        {key: row[key] for key in ("epoch", "lr", *HISTORY_COLUMNS)} for row in one_seed["history"]
    ]
    combined = repo.read_json(paths.metrics_path("shallow"))
    assert combined["num_seeds"] == 3
    top1 = [metrics["test_top1"] for metrics in per_seed]
    assert combined["test_top1"] == pytest.approx(sum(top1) / 3, abs=1e-6)
    assert combined["test_top1_std"] == pytest.approx(
        torch.tensor(top1, dtype=torch.float64).std().item(), abs=1e-6
    )  # sample std
    assert combined["test_top1_std"] > 0, "three seeds of one strategy gave identical test scores"
    for row in repo.read_json(paths.history_path("shallow")):
        for column in HISTORY_COLUMNS:
            assert row[f"{column}_min"] <= row[column] <= row[f"{column}_max"]
    assert (
        sum(map(sum, repo.read_json(paths.confusion_path("shallow"))["counts"]))
        == 3 * SMALL_RUN["data"]["synthetic"]["test_size"]
    )
    model_seed = repo.read_json(paths.provenance_path("shallow"))["model_seed"]
    assert per_seed[model_seed]["best_val_top1"] == max(metrics["best_val_top1"] for metrics in per_seed)


def find_revisions(tree: object, matches) -> list[dict]:
    """The data of every named entry of `dvc exp show --json` output for which matches(entry) is true."""
    found = []
    if isinstance(tree, dict):
        if tree.get("name") and isinstance(tree.get("data"), dict) and tree["data"].get("params") and matches(tree):
            found.append(tree["data"])
        tree = list(tree.values())
    if isinstance(tree, list):
        for child in tree:
            found.extend(find_revisions(child, matches))
    return found


def test_exp_show_lists_the_experiment_with_metrics(repo: Repo):
    assert set(repo.dvc("exp", "list", "--name-only").split()) == set(repo.experiments.values())
    revisions = find_revisions(
        json.loads(repo.dvc("exp", "show", "--json")), lambda entry: entry["name"] == repo.experiments["lr"]
    )
    assert len(revisions) == 1, f"dvc exp show does not list {repo.experiments['lr']} once"
    revision = revisions[0]
    assert revision["params"]["params.yaml"]["data"]["strategy"]["lr"] == OTHER_LR
    for name in STRATEGIES:
        assert revision["metrics"][str(paths.metrics_path(name))]["data"] == repo.experiment_metrics["lr"][name]


def test_plots_diff_names_every_strategy(repo: Repo):
    experiment = repo.experiments["lr"]
    output_dir = repo.root / "plots_diff"
    repo.dvc("plots", "diff", "HEAD", experiment, "-o", str(output_dir))
    html = (output_dir / "index.html").read_text()
    for name in STRATEGIES:
        assert re.search(rf'"filename": "{name}\.json"', html), name
    assert f'"rev": "{experiment}"' in html and '"rev": "HEAD"' in html


def test_queued_experiments_run_in_parallel(repo: Repo):
    queued_lrs = (0.011, 0.012)
    repo.dvc("exp", "run", "--queue", "-S", f"strategy.lr={queued_lrs[0]},{queued_lrs[1]}")
    repo.dvc("queue", "start", "-j", "2")
    deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = repo.dvc("queue", "status")
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(5)
    else:
        repo.dvc("queue", "kill", "--force", *re.findall(r"^(\w+)\s", status, flags=re.M))
        pytest.fail(f"the queue did not finish in {QUEUE_TIMEOUT_SECONDS} s:\n{status}")
    assert status.count("Success") == 2, status
    shown = json.loads(repo.dvc("exp", "show", "--json"))
    for lr in queued_lrs:
        revisions = find_revisions(
            shown, lambda entry: entry["data"]["params"]["params.yaml"]["data"]["strategy"]["lr"] == lr
        )
        assert len(revisions) == 1, lr
        for name in STRATEGIES:
            assert 0 <= revisions[0]["metrics"][str(paths.metrics_path(name))]["data"]["test_top1"] <= 1


def test_push_then_pull_into_a_fresh_clone(repo: Repo, tmp_path):
    repo.run("git", "checkout", "-q", "--", ".")  # back to the committed baseline after the experiments
    repo.dvc("checkout", "--force")
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-d", "shared", str(remote))
    repo.run("git", "commit", "-qam", "shared remote")
    repo.dvc("push")
    clone = Repo(tmp_path / "clone")
    repo.run("git", "clone", "-q", str(repo.root), str(clone.root))
    clone.dvc("pull")
    assert "Data and pipelines are up to date" in clone.dvc("status")
    assert clone.metrics() == repo.metrics()
    for name in STRATEGIES:
        assert (clone.root / paths.model_path(name)).read_bytes() == (repo.root / paths.model_path(name)).read_bytes()
