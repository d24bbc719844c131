"""Learning-rate selection: the first seed trains once per candidate, the best validation top-1 wins."""

import dataclasses
import json

import pytest
import torch

from tests.project import Repo, params_tree
from tests.training import run_context
from transfer import paths, runs
from transfer.config import parse_params

BEST_VAL_TOP1 = {0.1: 0.30, 0.05: 0.50, 0.01: 0.50, 0.001: 0.20}  # made-up scores; 0.05 and 0.01 tie


def fake_train_seed(run, lr_candidate=None):
    """A run whose best validation top-1 is looked up by its lr; it records which lr and checkpoint it used."""
    lr = run.strategy.training.lr
    metrics = {"best_val_top1": BEST_VAL_TOP1[lr], "best_epoch": 1, "lr": lr, "candidate": lr_candidate}
    return runs.SeedRun(run.seed, metrics, [], torch.zeros(1, 1), {}, torch.zeros(1, 5)), f"net at {lr}"


@pytest.mark.parametrize(
    ("candidates", "chosen"),
    [([0.1, 0.05, 0.001], 0.05), ([0.1, 0.01, 0.05], 0.01), ([0.1, 0.05, 0.01], 0.05), ([0.001], 0.001)],
    ids=["best", "tie: first listed", "tie: first listed, other order", "one candidate"],
)
def test_search_keeps_the_best_validation_top1_and_the_first_on_a_tie(monkeypatch, candidates, chosen):
    monkeypatch.setattr(runs, "train_seed", fake_train_seed)
    params = parse_params(params_tree({"strategy": {"lr": candidates}}))
    rows, run, net = runs.search_lr(run_context(params, "deep", data=None))
    assert rows == [{"lr": lr, "best_val_top1": BEST_VAL_TOP1[lr], "best_epoch": 1} for lr in candidates]
    assert (run.metrics["lr"], net) == (chosen, f"net at {chosen}")
    # Each candidate of a search has its own checkpoint; a single lr keeps the plain one.
    assert run.metrics["candidate"] == (chosen if len(candidates) > 1 else None)


def test_a_list_applies_to_phases_without_their_own_lr():
    phases = [{"train_layers": [], "epochs": 1}, {"train_layers": "all", "epochs": 1, "lr": 0.001}]
    tree = params_tree({"strategy": {"lr": [0.1, 0.01]}})
    tree["strategies"] = {"lpft": {"pretrained": True, "augment": True, "phases": phases}}
    strategy = parse_params(tree).strategy_named("lpft")
    assert strategy.lrs == (0.1, 0.01)
    at_candidate = strategy.at_lr(0.01)
    assert [phase.training.lr for phase in at_candidate.run_phases()] == [0.01, 0.001]
    assert dataclasses.replace(at_candidate.training, lr=0.1) == strategy.training


def test_lr_list_from_the_command_line_selects_per_strategy_in_one_experiment(tmp_path):
    tree = params_tree({"strategy": {"epochs": 1}})
    tree["strategies"] = {"probe": tree["strategies"]["probe"]}  # cached features: the cheapest strategy
    repo = Repo.create(tmp_path / "repo", tree)
    repo.dvc("exp", "run", "-S", "strategy.lr=[0.05,0.005]", "train@probe")
    rows = repo.read_json(paths.lr_search_path("probe"))
    assert [row["lr"] for row in rows] == [0.05, 0.005]
    best = max(rows, key=lambda row: row["best_val_top1"])  # max keeps the first of equals, as the rule does
    metrics = repo.read_json(paths.metrics_path("probe"))
    assert metrics["lr"] == best["lr"]
    assert metrics["best_val_top1"] == best["best_val_top1"]
    assert json.loads((repo.root / paths.provenance_path("probe")).read_text())["config"]["strategy"]["lrs"] == [
        0.05,
        0.005,
    ]
