"""The verdict through the plots stage on made-up runs: what it claims, and of what, with one seed, three seeds,
mixed seeds and identically configured twin strategies; and the rule's pieces on hand-made cases."""

import json

import numpy as np
import pytest

from benchmarks.verdict_calibration import DifficultyPool, simulate_run
from stages import plots
from tests.support.project import params_tree, write_params
from tests.support.verdict_runs import SECONDS_PER_SEED, write_run
from transfer import paths
from transfer.errors import UserError
from transfer.report import layout
from transfer.statistics import decision, paired_tests
from transfer.statistics.run_variance import RunVariance

NAMES = ("shallow", "deep", "scratch", "full", "lpft")
ENTRY = {"pretrained": True, "train_layers": [], "augment": True}


def simulated(seeds: int, images: int = 2000, lead_points: float = 3.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Five strategies' correctness (images, seeds), the first `lead_points` ahead of four equal others."""
    rng = np.random.default_rng(seed)
    runs, _, _ = simulate_run(rng, DifficultyPool.draw(rng), (seeds, images, 0.5, lead_points))
    return dict(zip(NAMES, runs.values(), strict=True))


def run_plots(root, correct: dict[str, np.ndarray], seeds: list[int]) -> tuple[dict, str]:
    """The plots stage on these results, with every strategy configured alike; verdict.json and report.md."""
    tree = params_tree({"strategy": {"seeds": seeds}})
    tree["strategies"] = {name: dict(ENTRY) for name in correct}
    write_params(root, tree)
    write_run(root, correct)
    plots.main([])
    return json.loads((root / layout.VERDICT_PATH).read_text()), (root / layout.REPORT_PATH).read_text()


def verdict_lines(report: str) -> list[str]:
    """The Verdict section's lines, up to the caveats."""
    section = report.split("## Verdict\n\n", 1)[1].split("- Caveats:")[0]
    return [line for line in section.strip().splitlines() if line]


def test_one_seed_speaks_of_the_trained_networks_and_what_more_would_take(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answer, report = run_plots(tmp_path, simulated(1), [0])
    assert answer["claims_for"] == "networks"
    lines = verdict_lines(report)
    assert lines[0].startswith("Claims about **these trained networks**, not the strategies: one seed per strategy")
    assert lines[1].startswith("- **Best network: shallow's**, test top-1")
    assert not any(line.startswith("- **Best: ") for line in lines)  # the recipes' form
    # Two more seeds of five strategies at SECONDS_PER_SEED each.
    minutes = round(2 * len(NAMES) * SECONDS_PER_SEED / 60)
    assert f"`strategy.seeds: [0, 1, 2]` adds {minutes} min of training on this machine" in lines[-1]


def test_three_seeds_make_claims_of_the_strategies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answer, report = run_plots(tmp_path, simulated(3), [0, 1, 2])
    assert answer["claims_for"] == "recipes"
    assert answer["best"] == "shallow" and answer["status"]["shallow"] == "best"
    # Three points ahead on 2,000 images with a seed spread of 0.5 points: each other strategy shown worse.
    assert {answer["status"][name] for name in NAMES[1:]} == {"worse"}
    assert answer["cheapest_flops"] == "shallow"  # only best and equivalent compete for the cheap pick
    assert answer["detectable_top1_diff"] > 0
    lines = verdict_lines(report)
    assert lines[0].startswith("Claims about **the strategies** (training recipes): 3 or more seeds each")
    assert lines[1].startswith("- **Best: shallow**, mean test top-1 ")
    assert lines[2] == "- Shown worse than shallow (top-1, family-wise 5%): deep, scratch, full, lpft."
    assert any(line.startswith("- Sensitivity: this run's rule finds a true top-1 gap of ") for line in lines)


def test_twins_are_never_called_worse_than_each_other(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    correct = simulated(1, lead_points=0.0)
    twin = {"twin_a": correct["shallow"], "twin_b": correct["shallow"].copy()}
    answer, report = run_plots(tmp_path, twin | {"deep": correct["deep"]}, [0])
    assert answer["best"] == "twin_a"  # equal: the first in params.yaml
    # Identical networks: their interval is one image wide, well inside the margin.
    assert answer["status"]["twin_b"] == "equivalent"
    assert "- Equivalent to twin_a's (interval within 1.0 points): twin_b." in verdict_lines(report)


def test_mixed_seed_counts_use_one_test_and_speak_of_networks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    correct = simulated(3)
    correct["deep"] = correct["deep"][:, :1]
    correct["lpft"] = correct["lpft"][:, :1]
    answer, _ = run_plots(tmp_path, correct, [0, 1, 2])
    assert answer["claims_for"] == "networks"
    pairs = json.loads((tmp_path / paths.COMPARISON_PATH).read_text())["pairs"]
    assert {pair["test"] for pair in pairs} == {paired_tests.SEED_IMAGE_T}  # deep - lpft too: no other test


def test_verdict_json_stays_a_narrow_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answer, _ = run_plots(tmp_path, simulated(3), [0, 1, 2])
    columns = [key for key, value in answer.items() if not isinstance(value, (list, dict))]
    columns += [f"{key}.{name}" for key, value in answer.items() if isinstance(value, dict) for name in value]
    assert len(columns) <= 25  # `dvc exp show` with five strategies
    assert {f"status.{name}" for name in NAMES} <= set(columns) and "tied_with_best" not in answer


def test_no_interval_has_zero_width_and_no_p_is_zero():
    # Every seed of every strategy identical: no seed spread, no per-image difference at all.
    same = np.tile(np.arange(400)[:, None] % 3 == 0, (1, 3))
    run = RunVariance.from_correctness({"a": same, "b": same.copy()})
    pair = run.pair(0, 1)
    assert pair.diff == 0 and pair.variance >= 1 / 400**2
    test = paired_tests.paired_test(run, 0, 1)
    low, high = test.interval(0.05, significant=False)
    assert low < 0 < high and test.p_value() == pytest.approx(1.0)
    # One image apart, still no p of 0.
    other = same.copy()
    other[1] = ~other[1]
    assert 0 < paired_tests.paired_test(RunVariance.from_correctness({"a": same, "b": other}), 0, 1).p_value()


def test_one_seed_variance_is_the_unconditional_paired_wald():
    # 1,000 images: a alone right on 60, b alone on 20; d = 0.04, variance ((80 / 1000) - 0.04^2) / 1000 x N/(N-1).
    a = np.zeros((1000, 1), dtype=bool)
    b = np.zeros((1000, 1), dtype=bool)
    a[:60] = True
    b[60:80] = True
    a[100:600] = b[100:600] = True
    pair = RunVariance.from_correctness({"a": a, "b": b}).pair(0, 1)
    assert pair.diff == pytest.approx(0.04)
    assert pair.variance == pytest.approx((0.08 - 0.04**2) / 1000 * 1000 / 999)


def test_pooled_seed_variance_has_the_pooled_degrees_of_freedom():
    rng = np.random.default_rng(3)
    correct = {name: rng.random((500, seeds)) < 0.6 for name, seeds in (("a", 3), ("b", 5), ("c", 1))}
    run = RunVariance.from_correctness(correct)
    assert run.seed_df == 2 + 4 and run.claims_for == "networks"
    spreads = [np.var(correct[name].mean(axis=0), ddof=1) for name in ("a", "b")]
    pooled = (2 * spreads[0] + 4 * spreads[1]) / 6
    assert run.seed_variance == pytest.approx(max(pooled, np.mean(run.interaction[:2]) / 500), rel=0.5)


def test_the_step_down_level_counts_every_pair_of_the_undecided():
    assert decision.step_level(0.05, 5) == 0.05 / 20 and decision.step_level(0.05, 2) == 0.05 / 2


def test_a_bad_margin_is_one_line_naming_it(tmp_path, monkeypatch):
    from transfer.config import parse_params

    with pytest.raises(UserError, match=r"^report.equivalence_margin = 0.0 is invalid: use a fraction"):
        parse_params(params_tree({"report": {"equivalence_margin": 0.0}}))
