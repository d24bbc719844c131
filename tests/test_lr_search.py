"""Learning-rate selection: the first seed trains once per candidate, the best validation top-1 wins.

A search is fair when every strategy, every phase included, tries as many rates: strategy.lr_factors
scales each strategy's own rates, and a shared lr list that would miss some rates is refused.
"""

import dataclasses

import pytest
import torch

from tests.support.project import params_tree
from tests.support.training import run_context
from transfer import paths
from transfer.config import LrCandidate, parse_params
from transfer.errors import UserError
from transfer.training import runs

BEST_VAL_TOP1 = {0.1: 0.30, 0.05: 0.50, 0.01: 0.50, 0.001: 0.20}  # made-up scores; 0.05 and 0.01 tie
FLOPS = {0.1: 10, 0.05: 20, 0.01: 40, 0.001: 80}  # made-up, distinct so a sum tells which runs it counts


def fake_train_seed(run, lr_candidate=None):
    """A run whose best validation top-1 is looked up by its lr; it records which lr and checkpoint it used."""
    lr = run.strategy.training.lr
    metrics = {
        "best_val_top1": BEST_VAL_TOP1[lr],
        "best_epoch": 1,
        "lr": lr,
        "train_flops": FLOPS[lr],
        "candidate": lr_candidate,
    }
    timing = {"total_seconds": FLOPS[lr] / 10}
    return runs.SeedRun(run.seed, metrics, [], torch.zeros(1, 1), timing, torch.zeros(1, 5)), f"net at {lr}"


@pytest.mark.parametrize(
    ("candidates", "chosen"),
    [([0.1, 0.05, 0.001], 0.05), ([0.1, 0.01, 0.05], 0.01), ([0.1, 0.05, 0.01], 0.05), ([0.001], 0.001)],
    ids=["best", "tie: first listed", "tie: first listed, other order", "one candidate"],
)
def test_search_keeps_the_best_validation_top1_and_the_first_on_a_tie(monkeypatch, candidates, chosen):
    monkeypatch.setattr(runs, "train_seed", fake_train_seed)
    tree = params_tree({"strategy": {"lr": candidates}})
    tree["strategies"] = {"deep": tree["strategies"]["deep"]}  # a strategy that takes the shared list
    search = runs.search_lr(run_context(parse_params(tree), "deep", data=None))
    assert [(row["lr"], row["best_val_top1"], row["chosen"]) for row in search.rows] == [
        (lr, BEST_VAL_TOP1[lr], lr == chosen) for lr in candidates
    ]
    assert (search.run.metrics["lr"], search.net, search.chosen) == (chosen, f"net at {chosen}", LrCandidate(chosen))
    # Each candidate of a search has its own checkpoint; a single lr keeps the plain one.
    assert search.run.metrics["candidate"] == (chosen if len(candidates) > 1 else None)
    # The cost of tuning: every candidate's run but the chosen one, which the first seed reuses.
    assert search.tuning_flops == sum(FLOPS[lr] for lr in candidates) - FLOPS[chosen]


def test_a_strategy_list_applies_to_phases_without_their_own_lr():
    phases = [{"train_layers": [], "epochs": 1}, {"train_layers": "all", "epochs": 1, "lr": 0.001}]
    tree = params_tree()
    tree["strategies"] = {"lpft": {"pretrained": True, "augment": True, "lr": [0.1, 0.01], "phases": phases}}
    strategy = parse_params(tree).strategy_named("lpft")
    assert strategy.lr_candidates == (LrCandidate(0.1), LrCandidate(0.01))
    at_candidate = strategy.at_candidate(LrCandidate(0.01))
    assert [phase.training.lr for phase in at_candidate.run_phases()] == [0.01, 0.001]
    assert dataclasses.replace(at_candidate.training, lr=0.1) == strategy.training


def test_factors_give_every_strategy_and_phase_as_many_rates_each_around_its_own():
    tree = params_tree({"strategy": {"lr": 0.05, "lr_factors": [0.5, 1, 2]}})
    del tree["strategies"]["probe"]["lr"]  # its own lr list conflicts with factors (tested below)
    params = parse_params(tree)
    for name, strategy in params.strategies.items():
        rates = [
            [phase.training.lr for phase in strategy.at_candidate(candidate).run_phases()]
            for candidate in strategy.lr_candidates
        ]
        written = [phase.training.lr for phase in strategy.run_phases()]
        assert rates == [[factor * lr for lr in written] for factor in (0.5, 1, 2)], name
    lpft = [phase.training.lr for phase in params.strategy_named("lpft").run_phases()]
    assert lpft == [0.05, 0.005]  # TEST_PARAMS' lpft: the strategy's lr and phase 2's own, both scaled above


def test_factor_one_leaves_every_rate_exactly_as_written():
    """The default (lr_factors: [1], or no key) trains exactly the rates params.yaml writes, phases' own included."""
    without_key = params_tree()
    del without_key["strategy"]["lr_factors"]
    for tree in (params_tree(), without_key):
        for name, strategy in parse_params(tree).strategies.items():
            first = strategy.lr_candidates[0]
            assert first.factor == 1.0 and strategy.at_candidate(first) == strategy, name


def lpft_only(changes: dict) -> dict:
    """The test params with lpft alone (a strategy with its own lr and a phase's own lr), changes merged in."""
    tree = params_tree(changes)
    tree["strategies"] = {"lpft": tree["strategies"]["lpft"], "deep": tree["strategies"]["deep"]}
    return tree


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy": {"lr_factors": []}}, r"strategy.lr_factors = \[\] is invalid: use a non-empty list"),
        ({"strategy": {"lr_factors": 3}}, r"strategy.lr_factors = 3 is invalid: use a non-empty list"),
        ({"strategy": {"lr_factors": [1, 0]}}, r"strategy.lr_factors\[1\] = 0"),
        ({"strategy": {"lr_factors": [1, -2]}}, r"strategy.lr_factors\[1\] = -2"),
        ({"strategy": {"lr_factors": [1, "x"]}}, r"strategy.lr_factors\[1\] = 'x' is invalid"),
        ({"strategy": {"lr_factors": [1, 1.0]}}, r"repeats 1: it would train the same run twice"),
        (
            {"strategy": {"lr": [0.1, 0.01], "lr_factors": [0.5, 1]}},
            r"strategy.lr = \[0.1, 0.01\] and strategy.lr_factors = \[0.5, 1.0\] both search the rate: drop one",
        ),
        (
            {"strategies": {"deep": {"lr": [0.1, 0.01]}}, "strategy": {"lr_factors": [0.5, 1]}},
            r"strategies.deep.lr = \[0.1, 0.01\] and strategy.lr_factors = \[0.5, 1.0\] both search .* drop one",
        ),
        (
            {"strategies": {"deep": {"lr_factors": [0.5, 1]}}},
            r"strategies.deep.lr_factors is invalid: the factors are shared .* set strategy.lr_factors",
        ),
        (
            {"strategy": {"lr": [0.1, 0.01]}},
            r"strategy.lr = \[0.1, 0.01\] would not tune lpft over these 2 rates .* strategy.lr_factors",
        ),
    ],
)
def test_bad_or_unequal_searches_name_the_keys_and_what_to_do(changes, message):
    with pytest.raises(UserError, match=message) as raised:
        parse_params(lpft_only(changes))
    assert "\n" not in str(raised.value)


def test_factors_from_the_command_line_search_and_count_the_tuning_cost(e2e_repo):
    # On the shared e2e repository; only train@probe (cached features: the cheapest strategy) runs. The test
    # params' probe searches its own lr list, which factors would also search: it gets one rate here.
    e2e_repo.dvc("exp", "run", "-S", "strategy.lr_factors=[0.1,1]", "-S", "strategies.probe.lr=0.05", "train@probe")
    rows = e2e_repo.read_json(paths.lr_search_path("probe"))
    assert [(row["lr"], row["factor"]) for row in rows] == [(0.1 * 0.05, 0.1), (0.05, 1.0)]
    best = max(rows, key=lambda row: row["best_val_top1"])  # max keeps the first of equals, as the rule does
    assert [row["chosen"] for row in rows] == [row is best for row in rows]
    metrics = e2e_repo.read_json(paths.metrics_path("probe"))
    assert (metrics["lr"], metrics["lr_factor"], metrics["lr_candidates"]) == (best["lr"], best["factor"], 2)
    assert metrics["best_val_top1"] == best["best_val_top1"]
    # Both candidates train the same network the same number of steps: the tuning run costs one seed's run.
    assert metrics["tuning_flops"] == metrics["train_flops"] > 0
    assert e2e_repo.read_json(paths.timing_path("probe"))["tuning_seconds"] > 0
