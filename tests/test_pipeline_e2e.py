"""End to end through the real dvc commands, on a small synthetic archive and random backbone weights.

Every test starts from the shared repository of tests/conftest.py (`e2e_repo`): the project with
the test params, after one `dvc repro`, committed. Each test runs alone and in any order; the
experiments a test needs, it runs itself. Strategies come from the repository's params, never
from a list here: a user may define any.
"""

import csv
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from tests.support.project import (
    EXPERIMENT_TARGET,
    WATCHED_STRATEGY,
    Repo,
    params_tree,
)
from transfer import paths
from transfer.report import layout

CHANCE_TOP1 = 0.01  # 100 classes
# With N test images a guessing network's top-1 has standard deviation sqrt(0.01 * 0.99 / N),
# 0.006 for the 300 of the test params: 5x chance lies 7 standard deviations above guessing.
LEARNED_TOP1 = 5 * CHANCE_TOP1
SCORES = ("test_top1", "test_top1_coarse", "test_top5", "test_loss", "best_val_top1", "best_epoch")  # seed means
HISTORY_COLUMNS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
CHEAP_STRATEGY = "probe"  # head only on cached features: an experiment that retrains it costs a second
# docs/experiments.md's readable `dvc exp show`: only what differs between the rows, plus every strategy's test top-1
# and the verdict's answer even where they did not change.
README_EXP_SHOW_FLAGS = ("--only-changed", "--drop", "models/|predictions|results", "--keep", "best|test_top1\\.")


def experiment_name(exp_run_output: str) -> str:
    """The name `dvc exp run` gave its experiment."""
    match = re.search(r"Ran experiment\(s\): (\S+)", exp_run_output)
    assert match, exp_run_output
    return match.group(1)


def locked_hash(repo: Repo, stage: str, output: Path) -> str:
    """The MD5 dvc.lock records for one output of a stage."""
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    (entry,) = [out for out in lock["stages"][stage]["outs"] if out["path"] == str(output)]
    return entry["md5"]


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


def lr_candidates(params: dict, strategy: str) -> list[float]:
    """The learning rates a strategy's first seed trains at: its own lr or list, else the shared one."""
    lr = params["strategies"][strategy].get("lr", params["strategy"]["lr"])
    return lr if isinstance(lr, list) else [lr]


def rendered_rows(shown: dict) -> dict[str, list[dict]]:
    """plot id -> the data rows DVC filled into its vega-lite spec, of `dvc plots show/diff --json` output."""
    return {
        plot_id: [row for entry in entries if entry["type"] == "vega" for row in entry["content"]["data"]["values"]]
        for plot_id, entries in shown["data"].items()
        if any(entry["type"] == "vega" for entry in entries)
    }


def assert_ran_only(output: str, ran: set[str], strategies: list[str]) -> None:
    """`dvc exp run`/`repro` output ran exactly the stages in ran and skipped every other stage."""
    every_stage = {"download", "prepare", "weights", "plots"} | {f"train@{name}" for name in strategies}
    for stage in sorted(ran):
        assert f"Running stage '{stage}'" in output, stage
    for stage in sorted(every_stage - ran):
        assert f"Stage '{stage}' didn't change, skipping" in output, stage


def test_repro_trains_every_strategy_and_learns(e2e_repo: Repo):
    metrics = e2e_repo.metrics()
    test_size = e2e_repo.params()["data"]["synthetic"]["test_size"]
    for name in e2e_repo.strategies():
        expected_keys = {*SCORES, *(f"{score}_std" for score in SCORES), "trainable_params", "num_seeds", "lr"}
        assert expected_keys <= set(metrics[name])
        assert "train_flops_std" not in metrics[name] and "lr_std" not in metrics[name]  # the same for every seed
        # Every candidate trained once (a single lr is a search of one), the best on validation kept.
        lr_search = e2e_repo.read_json(paths.lr_search_path(name))
        assert [row["lr"] for row in lr_search] == lr_candidates(e2e_repo.params(), name)
        (chosen,) = [row for row in lr_search if row["lr"] == metrics[name]["lr"]]
        assert chosen["best_val_top1"] == metrics[name]["best_val_top1"] == max(r["best_val_top1"] for r in lr_search)
        assert metrics[name]["num_seeds"] == 1 and all(metrics[name][f"{score}_std"] == 0.0 for score in SCORES)
        # A prediction in the right class is in the right superclass too.
        assert 0.0 <= metrics[name]["test_top1"] <= metrics[name]["test_top1_coarse"] <= 1.0
        # What computed the scores, as resolved (TEST_PARAMS pin cpu and fp32), beside them and in the provenance
        used = {"device": "cpu", "precision": "fp32"}
        assert {key: metrics[name][key] for key in used} == used
        assert e2e_repo.read_json(paths.provenance_path(name))["compute_used"] == {**used, "channels_last": False}
        model_file = torch.load(e2e_repo.root / paths.model_path(name), map_location="cpu", weights_only=True)
        assert model_file["compute_used"] == {**used, "channels_last": False}
        assert metrics[name]["test_top1"] <= metrics[name]["test_top5"] <= 1.0
        history = e2e_repo.read_json(paths.history_path(name))
        epochs = e2e_repo.params()["strategy"]["epochs"]
        assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
        columns = {f"{column}{suffix}" for column in HISTORY_COLUMNS for suffix in ("", "_min", "_max")}
        assert {"epoch", "lr"} | columns <= set(history[0])
        assert metrics[name]["best_val_top1"] == round(max(row["val_top1"] for row in history), 6)
        confusion = torch.tensor(e2e_repo.read_json(paths.confusion_path(name))["counts"])
        assert confusion.sum() == test_size
        assert (confusion.diagonal().sum() / confusion.sum()).item() == pytest.approx(
            metrics[name]["test_top1"], abs=1e-6
        )
        checkpoint = torch.load(e2e_repo.root / paths.model_path(name), map_location="cpu", weights_only=True)
        assert checkpoint["strategy"] == name
        assert len(checkpoint["class_names"]) == 100
    # Learning happened where the network can learn: the backbone trains on learnable synthetic classes.
    assert metrics["scratch"]["test_top1"] > LEARNED_TOP1
    assert metrics["deep"]["test_top1"] > LEARNED_TOP1
    assert metrics["shallow"]["trainable_params"] == 512 * 100 + 100
    assert metrics["scratch"]["trainable_params"] == metrics["scratch"]["total_params"]
    assert (
        metrics["shallow"]["trainable_params"]
        < metrics["deep"]["trainable_params"]
        < metrics["scratch"]["trainable_params"]
    )
    for plot_file in [layout.FINAL_SCORES_PATH, layout.REPORT_PATH, *layout.figure_paths(e2e_repo.strategies())]:
        assert (e2e_repo.root / plot_file).is_file(), plot_file
    for data_file in (layout.EPOCHS_PATH, layout.CONFUSION_PATH):
        assert {row["strategy"] for row in e2e_repo.read_json(data_file)} == set(e2e_repo.strategies()), data_file
    assert "| deep | yes | layer4 + head |" in (e2e_repo.root / layout.REPORT_PATH).read_text()


def test_seed_history_shows_each_epoch_before_the_stage_ends(e2e_baseline):
    # Read while the baseline's `dvc repro` trained (tests/conftest.py): the running seed's history.json
    # held its first epoch before the stage ended, and every epoch at the end.
    repo, epochs = e2e_baseline.repo, e2e_baseline.repo.params()["strategy"]["epochs"]
    assert epochs >= 2 and set(range(1, epochs)) <= e2e_baseline.history_rows_seen
    assert len(repo.read_json(paths.seed_dir(WATCHED_STRATEGY, 0) / paths.HISTORY_FILE)) == epochs
    assert [row["epoch"] for row in repo.read_json(paths.history_path(WATCHED_STRATEGY))] == list(range(1, epochs + 1))


def test_second_repro_reruns_nothing(e2e_repo: Repo):
    output = e2e_repo.dvc("repro")
    assert "Running stage" not in output
    assert "Data and pipelines are up to date" in e2e_repo.dvc("status")


def test_forced_rerun_reproduces_the_same_bytes(e2e_repo: Repo):
    # deep: augmentation and training BatchNorm, every source of randomness of a run; the cheap strategy: the
    # cached-features path. One `dvc repro` reruns both.
    names = ("deep", CHEAP_STRATEGY)

    def written() -> dict:
        """Each run's metrics and history bytes, and the hashes dvc.lock records for its model and predictions."""
        files = {
            str(path): (e2e_repo.root / path).read_bytes()
            for name in names
            for path in (paths.metrics_path(name), paths.history_path(name), paths.predictions_path(name, 0))
        }
        hashes = {
            (name, str(out)): locked_hash(e2e_repo, f"train@{name}", out)
            for name in names
            for out in (paths.model_path(name), paths.predictions_dir(name))
        }
        return files | hashes

    before = written()
    output = e2e_repo.dvc("repro", "--force", "--single-item", *(f"train@{name}" for name in names))
    for name in names:
        assert f"Running stage 'train@{name}'" in output
    assert written() == before


def assert_readable_exp_show(repo: Repo, strategies: list[str]) -> None:
    """The table of docs/experiments.md (after one experiment): at most 25 columns, every strategy's test top-1."""
    table = list(csv.reader(io.StringIO(repo.dvc("exp", "show", "--csv", *README_EXP_SHOW_FLAGS))))
    header, rows = table[0], table[1:]
    assert len(header) <= 25, header
    assert {f"test_top1.{strategy}" for strategy in strategies} <= set(header), header
    assert "best" in header and "strategy.lr" in header, header  # the answer, and the param that changed
    assert len(rows) >= 3  # workspace, the baseline commit and the experiment
    # docs/experiments.md shows exactly these flags.
    page = (paths.PROJECT_ROOT / "docs" / "experiments.md").read_text()
    assert "dvc exp show " + " ".join(shlex.quote(flag) for flag in README_EXP_SHOW_FLAGS) in page


def test_dvc_plots_show_and_diff_draw_every_plot_with_every_strategy(e2e_repo: Repo):
    # Strategies with and without phases side by side: every row of every plot data file has the same keys.
    strategies = set(e2e_repo.strategies())
    shown = json.loads(e2e_repo.dvc("plots", "show", "--json"))
    assert "errors" not in shown, shown.get("errors")
    declared = yaml.safe_load((e2e_repo.root / "dvc.yaml").read_text())["plots"]
    rows = rendered_rows(shown)
    assert set(rows) == {next(iter(entry)) for entry in declared if isinstance(entry, dict)}  # not the PNG folder
    for plot_id, plot_rows in rows.items():
        assert {row["strategy"] for row in plot_rows} == strategies, plot_id
    diff = json.loads(e2e_repo.dvc("plots", "diff", "HEAD", "--json"))  # HEAD against the workspace
    assert "errors" not in diff, diff.get("errors")
    for plot_id, plot_rows in rendered_rows(diff).items():
        series = {(row["rev"], row["strategy"]) for row in plot_rows}
        assert series == {(rev, name) for rev in ("HEAD", "workspace") for name in strategies}, plot_id


def test_changing_two_strategies_reruns_only_theirs_more_seeds_report_mean_and_spread_and_plots_diff(e2e_repo: Repo):
    # One experiment changes deep's layers and gives the cheap strategy three seeds through a key its params
    # lack (`+`): only those two train stages (and plots) rerun, the cheap one reports over its seeds, and
    # `dvc plots diff` draws the experiment beside HEAD (one `dvc exp run` for all three checks).
    name = CHEAP_STRATEGY
    one_seed = {
        "metrics": e2e_repo.read_json(paths.metrics_path(name)),
        "history": e2e_repo.read_json(paths.history_path(name)),
    }
    assert "seeds" not in e2e_repo.params()["strategies"][name]  # so `+` adds a new override key
    output = e2e_repo.dvc(
        "exp",
        "run",
        "-S",
        "strategies.deep.train_layers=[layer3,layer4]",
        "-S",
        f"+strategies.{name}.seeds=[0,1,2]",
        EXPERIMENT_TARGET,
    )
    assert_ran_only(output, {"train@deep", f"train@{name}", "plots"}, e2e_repo.strategies())
    experiment = experiment_name(output)
    output_dir = e2e_repo.root / "plots_diff"
    e2e_repo.dvc("plots", "diff", "HEAD", experiment, "-o", str(output_dir))
    html = (output_dir / "index.html").read_text()
    assert f'"rev": "{experiment}"' in html and '"rev": "HEAD"' in html
    for strategy in e2e_repo.strategies():
        assert strategy in html, strategy
    assert "| deep | yes | layer3 + layer4 + head |" in (e2e_repo.root / layout.REPORT_PATH).read_text()
    seed_folders = sorted(path.name for path in (e2e_repo.root / paths.seeds_dir(name)).iterdir())
    assert seed_folders == ["seed_0", "seed_1", "seed_2"]
    per_seed = [e2e_repo.read_json(paths.seed_dir(name, seed) / paths.METRICS_FILE) for seed in (0, 1, 2)]
    # Seed 0 is the same run as before: adding seeds never changes the first one.
    assert per_seed[0] == {key: value for key, value in one_seed["metrics"].items() if key in per_seed[0]}
    assert e2e_repo.read_json(paths.seed_dir(name, 0) / paths.HISTORY_FILE) == [
        {key: row[key] for key in ("epoch", "lr", *HISTORY_COLUMNS)} for row in one_seed["history"]
    ]
    combined = e2e_repo.read_json(paths.metrics_path(name))
    assert combined["num_seeds"] == 3
    top1 = [metrics["test_top1"] for metrics in per_seed]
    assert combined["test_top1"] == pytest.approx(sum(top1) / 3, abs=1e-6)
    sample_std = torch.tensor(top1, dtype=torch.float64).std().item()
    assert combined["test_top1_std"] == pytest.approx(sample_std, abs=1e-6)
    assert combined["best_val_top1_std"] > 0, "three seeds of one strategy gave identical validation scores"
    for row in e2e_repo.read_json(paths.history_path(name)):
        for column in HISTORY_COLUMNS:
            assert row[f"{column}_min"] <= row[column] <= row[f"{column}_max"]
    test_size = e2e_repo.params()["data"]["synthetic"]["test_size"]
    assert sum(map(sum, e2e_repo.read_json(paths.confusion_path(name))["counts"])) == 3 * test_size
    model_seed = e2e_repo.read_json(paths.provenance_path(name))["model_seed"]
    assert per_seed[model_seed]["best_val_top1"] == max(metrics["best_val_top1"] for metrics in per_seed)


def test_push_then_pull_into_a_fresh_clone(e2e_repo: Repo, tmp_path):
    remote = tmp_path / "remote"
    e2e_repo.dvc("remote", "add", "-d", "shared", str(remote))
    e2e_repo.run("git", "commit", "-qam", "shared remote")
    e2e_repo.dvc("push")
    clone = Repo(tmp_path / "clone")
    e2e_repo.run("git", "clone", "-q", str(e2e_repo.root), str(clone.root))
    clone.dvc("pull")
    assert "Data and pipelines are up to date" in clone.dvc("status")
    assert clone.metrics() == e2e_repo.metrics()
    for strategy in e2e_repo.strategies():
        assert (clone.root / paths.model_path(strategy)).read_bytes() == (
            e2e_repo.root / paths.model_path(strategy)
        ).read_bytes()


def test_test_params_are_what_this_file_assumes():
    # The assertions above name these strategies; the shared repository is built from the test params.
    assert {"shallow", "deep", "scratch", CHEAP_STRATEGY} <= set(params_tree()["strategies"])
