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
from transfer.statistics import distributions, paired_tests

IMAGES = 40


def correctness(*columns: list[int]) -> np.ndarray:
    """(images, seeds) bool from one 0/1 list per seed."""
    return np.array(columns, dtype=bool).T


def prediction_pair(a_top1: list[int], b_top1: list[int], labels: np.ndarray) -> tuple:
    """StrategyPredictions of a and b (one seed) from per-image top-1 classes; top-5 adds four wrong classes."""
    made = []
    for name, top1 in (("deep", a_top1), ("shallow", b_top1)):
        top5 = np.stack([np.array(top1)] + [np.full(len(labels), 90 + k) for k in range(4)], axis=1)
        correct = top5[:, :1] == labels[:, None]
        metrics = {"test_top1": float(correct.mean()), "test_top5": float(correct.mean())}
        made.append(comparison.StrategyPredictions(name, correct, correct, metrics))
    return tuple(made)


def compare_pair(a: comparison.StrategyPredictions, b: comparison.StrategyPredictions) -> dict:
    """The one row of comparing a and b alone (Holm over one pair changes nothing)."""
    (row,) = comparison.compare_loaded({a.name: a, b.name: b})
    return row


def test_pair_row_and_its_reading():
    labels = np.zeros(100, dtype=np.int64)
    deep, shallow = prediction_pair([0] * 60 + [1] * 40, [0] * 20 + [1] * 80, labels)  # 60% against 20%
    row = compare_pair(deep, shallow)
    assert row["top1_diff"] == 0.4 and row["n_images"] == 100 and row["n_seeds"] == [1, 1]
    assert row["test"] == paired_tests.NETWORKS_T
    assert row["significant"] and row["ci_level"] == 0.95  # one pair: Holm's level is the plain 5%
    # 40 discordant images, all a's: the unconditional paired variance ((40 / 100) - 0.4^2) / 100 x 100 / 99, with
    # t's 99 df; the interval is not stuck at the estimate (the conditional one's upper end was 0.4 itself).
    error = math.sqrt((0.4 - 0.4**2) / 99)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.4 - 1.984217 * error, 0.4 + 1.984217 * error), abs=1e-6)
    line = comparison.reading(row)
    assert line.startswith("top-1: deep beats shallow by 40.0 points, 95.00% CI [")
    assert line.endswith("p < 0.001, Holm p < 0.001; for these two trained networks only (one seed each)")
    # Pairs are named in alphabetical order, and read from the winner's side either way.
    assert "deep beats shallow by 40.0 points" in comparison.reading(compare_pair(shallow, deep))
    close, _ = prediction_pair([0] * 51 + [1] * 49, [0] * 50 + [1] * 50, labels)
    assert "no significant difference" in comparison.reading(compare_pair(close, _))


def test_reading_of_a_pair_over_seeds():
    pair = {"a": "deep", "b": "shallow", "n_seeds": [3, 3], "test": paired_tests.SEED_IMAGE_T, "top1_diff": 0.123}
    pair |= {"ci_low": 0.115, "ci_high": 0.131, "ci_level": 0.9875, "p_value": 1e-9, "p_holm": 4e-9}
    over = "over training runs (3 and 3 seeds, the seed spread pooled over the run's strategies) and test images"
    assert comparison.reading(pair | {"significant": True}) == (
        f"top-1: deep beats shallow by 12.3 points, 98.75% CI [11.5, 13.1], p < 0.001, Holm p < 0.001; {over}"
    )
    pair |= {"p_value": 0.02, "p_holm": 0.08, "significant": False}
    assert comparison.reading(pair) == (
        f"top-1: no significant difference between deep and shallow (p = 0.02, Holm p = 0.08; {over})"
    )


def test_holm_decides_and_the_intervals_follow(tmp_path):
    # Three strategies, one seed each, c predicting as b. a - b: 15 images only a gets right, 5 only b: the paired
    # t on 400 images gives raw p 0.025, below 0.05; Holm multiplies the smallest of three p by 3.
    right = np.zeros((3, 400), dtype=bool)
    right[:, 20:220] = True  # images every strategy gets right
    right[0, :15] = True  # only a
    right[1:, 15:20] = True  # only b and c
    loaded = {}
    for name, correct in zip("abc", right[:, :, None], strict=True):
        metrics = {"test_top1": float(correct.mean()), "test_top5": float(correct.mean())}
        loaded[name] = comparison.StrategyPredictions(name, correct, correct, metrics)
    rows = {(row["a"], row["b"]): row for row in comparison.compare_loaded(loaded)}
    raw = [rows[pair]["p_value"] for pair in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [rows[pair]["p_holm"] for pair in (("a", "b"), ("a", "c"), ("b", "c"))] == pytest.approx(
        paired_tests.holm(raw), rel=1e-5
    )
    # d = 10 / 400, per-image variance (20 / 400 - d^2) x 400 / 399: t = d / sqrt(that / 400), 399 df.
    t = 0.025 / math.sqrt((0.05 - 0.025**2) / 399)
    assert raw[0] == pytest.approx(distributions.student_t_two_sided_p(t, 399), rel=1e-5)
    assert rows[("a", "b")]["p_holm"] == pytest.approx(3 * raw[0], rel=1e-5) and not rows[("a", "b")]["significant"]
    # Its interval is at Holm's level for the first step, 1 - 0.05 / 3, and holds 0 as the decision says.
    assert rows[("a", "b")]["ci_level"] == pytest.approx(1 - 0.05 / 3)
    # b and c predict alike: p 1, and an interval of nonzero width (the floor of one image's share) around 0.
    b_c = rows[("b", "c")]
    assert b_c["p_value"] == 1.0 and b_c["ci_low"] < 0 < b_c["ci_high"]
    for row in rows.values():
        assert row["significant"] == (row["p_holm"] < comparison.SIGNIFICANCE)
        assert row["significant"] == (not row["ci_low"] <= 0 <= row["ci_high"])  # one procedure
        assert row["ci_low"] <= row["top1_diff"] <= row["ci_high"]


def test_fewer_than_two_strategies_give_a_sentence_not_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to read there: one strategy must not need its predictions
    only = np.ones((10, 1), dtype=bool)
    assert comparison.compare_strategies({"shallow": comparison.StrategyPredictions("shallow", only, only, {})}) == []
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
    (row,) = comparison.compare_strategies(comparison.load_strategies(METRICS, SEEDS))
    assert (row["a"], row["b"], row["top1_diff"], row["p_value"]) == ("deep", "shallow", 0.0, 1.0)


def test_missing_predictions_name_the_strategy_and_file(project):
    paths.predictions_path("shallow", 0).unlink()
    with pytest.raises(
        UserError, match=r"^predictions of strategy shallow are missing: predictions/shallow/seed_0\.npz"
    ):
        comparison.compare_strategies(comparison.load_strategies(METRICS, SEEDS))


def test_predictions_of_another_length_are_refused(project):
    labels = project[:-1]
    save_npz(paths.predictions_path("deep", 0), {"top5": np.zeros((len(labels), 5), np.int64), "labels": labels})
    with pytest.raises(UserError, match=r"strategy deep in predictions/deep/seed_0\.npz cover 39 images.*has 40"):
        comparison.compare_strategies(comparison.load_strategies(METRICS, SEEDS))


def test_predictions_with_other_labels_are_refused(project):
    labels = project.copy()
    labels[:3] += 1
    save_npz(paths.predictions_path("deep", 0), {"top5": np.zeros((IMAGES, 5), np.int64), "labels": labels})
    with pytest.raises(UserError, match=r"strategy deep in predictions/deep/seed_0\.npz .*differ .* at 3 of 40"):
        comparison.compare_strategies(comparison.load_strategies(METRICS, SEEDS))


def test_predictions_from_another_run_are_refused(project):
    metrics = {**METRICS, "deep": {"test_top1": 0.975, "test_top5": 1.0}}  # one image of 40 fewer
    with pytest.raises(UserError, match=r"strategy deep .* top-1 1\.000000, but results/deep/metrics\.json says"):
        comparison.compare_strategies(comparison.load_strategies(metrics, SEEDS))


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
        assert (pair["test"], pair["n_images"], pair["n_seeds"]) == (paired_tests.NETWORKS_T, len(labels), [1, 1])
        assert pair["significant"] == (pair["p_holm"] < comparison.SIGNIFICANCE)
        assert pair["significant"] == (not pair["ci_low"] <= 0 <= pair["ci_high"])
        # The paired test by hand from the saved predictions: ((n10 + n01) / N - d^2) / (N - 1), t with N - 1 df.
        a_only = int(np.sum(top1_correct[a] & ~top1_correct[b]))
        b_only = int(np.sum(~top1_correct[a] & top1_correct[b]))
        images, diff = len(labels), (a_only - b_only) / len(labels)
        variance = max(((a_only + b_only) / images - diff**2) / (images - 1), 1 / images**2)
        expected = distributions.student_t_two_sided_p(diff / math.sqrt(variance), images - 1)
        assert pair["p_value"] == pytest.approx(expected, rel=1e-5)  # stored to 6 significant digits

    rows = repo.read_json(paths.COST_PATH)
    assert [row["strategy"] for row in rows] == strategies
    timing = {name: repo.read_json(paths.timing_path(name)) for name in strategies}
    for row in rows:
        assert row["train_flops"] == metrics[row["strategy"]]["train_flops"]
        assert row["test_top1"] == metrics[row["strategy"]]["test_top1"]
        assert row["train_seconds"] == timing[row["strategy"]]["seconds_per_seed"]
        # The common target: the best strategy reaches it by its best epoch, and what it spent by then is a
        # point of its metrics' FLOPs by epoch.
        spent = metrics[row["strategy"]]["train_flops_by_epoch"]
        assert spent[-1] == row["train_flops"] and spent == sorted(spent)
        if row["epoch_to_target"] is not None:
            assert row["train_flops_to_target"] == spent[row["epoch_to_target"] - 1]
        assert row["tuning_flops"] == (row["lr_candidates"] - 1) * row["train_flops"]  # candidates: same steps
    best_val = {name: max(r["val_top1"] for r in repo.read_json(paths.history_path(name))) for name in strategies}
    leader = max(best_val, key=best_val.get)
    assert next(row for row in rows if row["strategy"] == leader)["epoch_to_target"] is not None

    report = (repo.root / paths.PLOTS_DIR / "report.md").read_text()
    assert "| a | b | top-1 difference | interval | p | Holm p |" in report
    assert all(f"| {pair['a']} | {pair['b']} |" in report for pair in pairs)
    assert report.count("- top-1: ") == len(pairs)
    assert "(figures/cost.png)" in report and (repo.root / paths.COST_FIGURE_PATH).stat().st_size > 0
    shown = json.loads(repo.dvc("plots", "show", "--json"))
    scatter = json.dumps(shown["data"]["Test top-1 against training FLOPs"])
    assert all(str(row["train_flops"]) in scatter for row in rows)  # every strategy's point is rendered
    assert '"color": {"field": "strategy"' in scatter and '"shape": {"field": "rev"' in scatter  # diff: revisions apart


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


def test_predictions_of_another_number_of_seeds_are_refused(project):
    metrics = {**METRICS, "deep": {**METRICS["deep"], "num_seeds": 2}}  # metrics of two seeds, predictions of one
    with pytest.raises(UserError, match=r"^strategy deep has predictions of 1 seed\(s\) \[0\] in predictions/deep/, "):
        comparison.compare_strategies(comparison.load_strategies(metrics, SEEDS))
