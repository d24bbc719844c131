"""Paired statistics between strategies (transfer/report/comparison.py), against hand-computed cases and bad inputs."""

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from transfer import paths
from transfer.atomic import save_npz
from transfer.errors import UserError
from transfer.report import comparison

IMAGES = 40


def correctness(*columns: list[int]) -> np.ndarray:
    """(images, seeds) bool from one 0/1 list per seed."""
    return np.array(columns, dtype=bool).T


def test_mcnemar_exact_known_tables():
    # b = 10, c = 2: 2 P(X <= 2) for X ~ Binomial(12, 1/2) = 2 (1 + 12 + 66) / 4096.
    assert comparison.mcnemar_exact_p(10, 2) == pytest.approx(2 * 79 / 4096, rel=1e-15)
    assert comparison.mcnemar_exact_p(2, 10) == comparison.mcnemar_exact_p(10, 2)
    assert comparison.mcnemar_exact_p(5, 0) == 2 / 32
    assert comparison.mcnemar_exact_p(3, 3) == 1.0  # the doubled tail passes 1: capped
    assert comparison.mcnemar_exact_p(0, 0) == 1.0  # no discordant image: no evidence
    assert 0 < comparison.mcnemar_exact_p(6000, 4000) < 1e-80  # large tables stay exact, no overflow


def test_bootstrap_is_degenerate_when_every_image_differs_by_the_same_amount():
    assert comparison.bootstrap_interval(np.full(IMAGES, 3)) == (3.0, 3.0)
    half = IMAGES // 2
    a = correctness([1] * IMAGES, [1] * IMAGES)
    b = correctness([1] * half + [0] * half, [0] * half + [1] * half)  # each image right in one seed of two
    result = comparison.paired_test(a, b, reported_diff=0.5)  # a's mean 1, b's 0.5 on every image
    assert (result.diff, result.ci_low, result.ci_high) == (0.5, 0.5, 0.5)
    assert result.test == comparison.SIGN_FLIP  # several seeds


def test_bootstrap_matches_the_normal_approximation_on_a_large_fixture():
    # 10,000 images: 3,000 only a gets right, 2,000 only b, 5,000 the same: mean 0.1, sd sqrt(0.5 - 0.01) = 0.7.
    differences = np.array([1] * 3000 + [-1] * 2000 + [0] * 5000)
    standard_error = 0.7 / math.sqrt(len(differences))
    low, high = comparison.bootstrap_interval(differences)
    # Monte Carlo error of a 2.5% quantile from 10,000 resamples: sqrt(0.025 * 0.975 / 10,000) / phi(1.96)
    # = 0.027 standard errors; the mean of 10,000 symmetric differences is normal to far better than that.
    # 0.15 standard errors is over 5 Monte Carlo sds.
    assert low == pytest.approx(0.1 - 1.959964 * standard_error, abs=0.15 * standard_error)
    assert high == pytest.approx(0.1 + 1.959964 * standard_error, abs=0.15 * standard_error)
    assert comparison.bootstrap_interval(differences) == (low, high)  # fixed seed: the same numbers every time


def test_sign_flip_agrees_with_mcnemar_on_single_seeds():
    # With 0/1 correctness, flipping signs is the binomial test McNemar computes exactly.
    differences = np.array([1] * 10 + [-1] * 2 + [0] * 88)
    exact = comparison.mcnemar_exact_p(10, 2)
    # Monte Carlo sd of the estimate: sqrt(p (1 - p) / 10,000) = 0.0019; 0.01 is over 5 sds.
    assert comparison.sign_flip_p(differences) == pytest.approx(exact, abs=0.01)
    assert comparison.sign_flip_p(np.zeros(IMAGES, dtype=np.int64)) == 1.0  # nothing differs
    # All 30 on one side: only 2 of 2^30 sign patterns are as extreme, so the estimator's floor 1/(n + 1).
    assert comparison.sign_flip_p(np.ones(30, dtype=np.int64)) == 1 / (comparison.PERMUTATIONS + 1)


def test_several_seeds_average_each_image_over_its_seeds():
    # a's two seeds: image 0 right twice, image 1 once; b's one seed: image 0 wrong, image 1 right.
    numerators, denominator = comparison.paired_differences(correctness([1, 1], [1, 0]), correctness([0, 1]))
    assert (numerators / denominator).tolist() == [1.0, -0.5]


def prediction_pair(a_top1: list[int], b_top1: list[int], labels: np.ndarray) -> tuple:
    """StrategyPredictions of a and b (one seed) from per-image top-1 classes; top-5 adds four wrong classes."""
    made = []
    for name, top1 in (("deep", a_top1), ("shallow", b_top1)):
        top5 = np.stack([np.array(top1)] + [np.full(len(labels), 90 + k) for k in range(4)], axis=1)
        correct = top5[:, :1] == labels[:, None]
        metrics = {"test_top1": float(correct.mean()), "test_top5": float(correct.mean())}
        made.append(comparison.StrategyPredictions(name, correct, correct, metrics))
    return tuple(made)


def test_pair_row_and_its_reading():
    labels = np.zeros(100, dtype=np.int64)
    deep, shallow = prediction_pair([0] * 60 + [1] * 40, [0] * 20 + [1] * 80, labels)  # 60% against 20%
    row = comparison.compare_pair(deep, shallow)
    assert row["top1_diff"] == 0.4 and row["n_images"] == 100 and row["n_seeds"] == [1, 1]
    assert row["test"] == comparison.MCNEMAR
    assert row["p_value"] == float(f"{comparison.mcnemar_exact_p(40, 0):.6g}")
    assert row["ci_low"] < 0.4 < row["ci_high"]
    line = comparison.reading(row)
    assert line.startswith("top-1: deep beats shallow by 40.0 points, 95% CI [")
    assert line.endswith("p < 0.001")
    flipped = comparison.reading(comparison.compare_pair(shallow, deep))
    assert "deep beats shallow by 40.0 points" in flipped  # read from the winner's side either way
    close, _ = prediction_pair([0] * 51 + [1] * 49, [0] * 50 + [1] * 50, labels)
    assert "no significant difference" in comparison.reading(comparison.compare_pair(close, _))


def test_reading_formats_the_issue_example():
    pair = {"a": "deep", "b": "shallow", "top1_diff": 0.123, "ci_low": 0.115, "ci_high": 0.131, "p_value": 1e-9}
    assert comparison.reading(pair) == "top-1: deep beats shallow by 12.3 points, 95% CI [11.5, 13.1], p < 0.001"
    pair["p_value"] = 0.41
    assert comparison.reading(pair) == "top-1: no significant difference between deep and shallow (p = 0.41)"


def test_fewer_than_two_strategies_give_a_sentence_not_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to read there: one strategy must not need its predictions
    assert comparison.compare_strategies({"shallow": {"test_top1": 0.5}}, {"shallow": [0]}) == []
    section = comparison.write_comparison([], ["shallow"])
    assert "needs at least two" in section and "|" not in section
    assert (tmp_path / paths.COMPARISON_PATH).read_text() == '{\n  "pairs": []\n}\n'


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with prepared test labels and valid predictions of deep and shallow (one seed, IMAGES images)."""
    monkeypatch.chdir(tmp_path)
    labels = np.arange(IMAGES) % 7
    save_npz(paths.PREPARED_PATH, {"test_labels": labels})
    for name in ("deep", "shallow"):
        top5 = (labels[:, None] + np.arange(5)) % 7  # top-1 always right
        save_npz(paths.predictions_path(name, 0), {"top5": top5, "labels": labels})
    return labels


METRICS = {name: {"test_top1": 1.0, "test_top5": 1.0} for name in ("deep", "shallow")}
SEEDS = {"deep": [0], "shallow": [0]}


def test_valid_predictions_compare(project):
    (row,) = comparison.compare_strategies(METRICS, SEEDS)
    assert (row["a"], row["b"], row["top1_diff"], row["p_value"]) == ("deep", "shallow", 0.0, 1.0)


def test_missing_predictions_name_the_strategy_and_file(project):
    paths.predictions_path("shallow", 0).unlink()
    with pytest.raises(
        UserError, match=r"^predictions of strategy shallow are missing: predictions/shallow/seed_0\.npz"
    ):
        comparison.compare_strategies(METRICS, SEEDS)


def test_predictions_of_another_length_are_refused(project):
    labels = project[:-1]
    save_npz(paths.predictions_path("deep", 0), {"top5": np.zeros((len(labels), 5), np.int64), "labels": labels})
    with pytest.raises(UserError, match=r"strategy deep in predictions/deep/seed_0\.npz cover 39 images.*has 40"):
        comparison.compare_strategies(METRICS, SEEDS)


def test_predictions_with_other_labels_are_refused(project):
    labels = project.copy()
    labels[:3] += 1
    save_npz(paths.predictions_path("deep", 0), {"top5": np.zeros((IMAGES, 5), np.int64), "labels": labels})
    with pytest.raises(UserError, match=r"strategy deep in predictions/deep/seed_0\.npz .*differ .* at 3 of 40"):
        comparison.compare_strategies(METRICS, SEEDS)


def test_predictions_from_another_run_are_refused(project):
    metrics = {**METRICS, "deep": {"test_top1": 0.975, "test_top5": 1.0}}  # one image of 40 fewer
    with pytest.raises(UserError, match=r"strategy deep .* top-1 1\.000000, but results/deep/metrics\.json says"):
        comparison.compare_strategies(metrics, SEEDS)


def test_pipeline_writes_predictions_comparison_and_cost(e2e_repo):
    repo = e2e_repo
    strategies, metrics = repo.strategies(), repo.metrics()
    with np.load(repo.root / paths.PREPARED_PATH) as prepared:
        labels = prepared["test_labels"]
    top1_correct = {}
    for name in strategies:
        with np.load(repo.root / paths.predictions_path(name, 0)) as saved:
            assert saved["top5"].shape == (len(labels), 5)
            assert np.array_equal(saved["labels"], labels)
            top1_correct[name] = saved["top5"][:, 0] == labels
        assert metrics[name]["train_flops"] > 0
    assert metrics["scratch"]["train_flops"] > metrics["shallow"]["train_flops"]
    # probe caches its frozen features: the same network as shallow, cheaper to train.
    assert metrics["probe"]["train_flops"] < metrics["shallow"]["train_flops"]

    pairs = repo.read_json(paths.COMPARISON_PATH)["pairs"]
    assert [(pair["a"], pair["b"]) for pair in pairs] == list(itertools.combinations(sorted(strategies), 2))
    for pair in pairs:
        a, b = pair["a"], pair["b"]
        assert pair["top1_diff"] == round(metrics[a]["test_top1"] - metrics[b]["test_top1"], 6)
        assert pair["ci_low"] <= pair["top1_diff"] <= pair["ci_high"]
        assert pair["top5_ci_low"] <= pair["top5_diff"] <= pair["top5_ci_high"]
        assert (pair["test"], pair["n_images"], pair["n_seeds"]) == (comparison.MCNEMAR, len(labels), [1, 1])
        # McNemar by hand from the saved predictions: 2 P(X <= min) for X ~ Binomial(discordant, 1/2).
        a_only = int(np.sum(top1_correct[a] & ~top1_correct[b]))
        b_only = int(np.sum(~top1_correct[a] & top1_correct[b]))
        discordant = a_only + b_only
        tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1))
        expected = min(1.0, 2 * tail / 2**discordant) if discordant else 1.0
        assert pair["p_value"] == pytest.approx(expected, rel=1e-5)  # stored to 6 significant digits

    rows = repo.read_json(paths.COST_PATH)
    assert [row["strategy"] for row in rows] == strategies
    timing = {name: repo.read_json(paths.timing_path(name)) for name in strategies}
    for row in rows:
        assert row["train_flops"] == metrics[row["strategy"]]["train_flops"]
        assert row["test_top1"] == metrics[row["strategy"]]["test_top1"]
        assert row["train_seconds"] == timing[row["strategy"]]["seconds_per_seed"]
        assert 1 <= row["epochs_to_90pct_best_val_top1"] <= repo.params()["strategy"]["epochs"]

    report = (repo.root / paths.PLOTS_DIR / "report.md").read_text()
    assert "| a | b | top-1 difference | 95% CI | p |" in report
    assert all(f"| {pair['a']} | {pair['b']} |" in report for pair in pairs)
    assert report.count("- top-1: ") == len(pairs)
    assert "(figures/cost.png)" in report and (repo.root / paths.COST_FIGURE_PATH).stat().st_size > 0
    shown = json.loads(repo.dvc("plots", "show", "--json"))
    scatter = json.dumps(shown["data"]["Test top-1 against training FLOPs"])
    assert all(str(row["train_flops"]) in scatter for row in rows)  # every strategy's point is rendered
    assert '"color": {"field": "strategy"' in scatter and '"shape": {"field": "rev"' in scatter  # diff: revisions apart


def test_predictions_are_byte_identical_across_identical_runs(e2e_repo):
    path = e2e_repo.root / paths.predictions_path("probe", 0)
    before = path.read_bytes()
    e2e_repo.dvc("repro", "--force", "--single-item", "train@probe")  # the cached-features strategy: seconds
    assert path.read_bytes() == before


def test_plots_stage_stops_on_a_bad_predictions_file_and_writes_nothing(e2e_repo):
    repo = e2e_repo
    plots_before = {path: path.read_bytes() for path in (repo.root / paths.PLOTS_DIR).rglob("*") if path.is_file()}
    predictions = repo.root / paths.predictions_path("deep", 0)
    with np.load(predictions) as saved:
        top5, labels = saved["top5"], saved["labels"]
    predictions.unlink()  # a DVC-cached output: unlinking leaves the cache intact
    save_npz(predictions, {"top5": top5, "labels": np.roll(labels, 1)})
    result = subprocess.run(
        [sys.executable, "-m", "stages.plots"], cwd=repo.root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: predictions of strategy deep in {paths.predictions_path('deep', 0)} have labels that differ "
        f"from the test set's at {int(np.count_nonzero(np.roll(labels, 1) != labels))} of {len(labels)} images: "
        "they come from another test set; run: dvc repro train@deep"
    ]
    after = {path: path.read_bytes() for path in (repo.root / paths.PLOTS_DIR).rglob("*") if path.is_file()}
    assert after == plots_before
