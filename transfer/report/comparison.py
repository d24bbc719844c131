"""Paired statistics between strategies on the same test images: is a difference in accuracy larger than chance?

Every strategy is scored on the same test images, so two strategies are compared image by image
(transfer/statistics/paired_tests.py). For each unordered pair (a, b) and each of top-1 and top-5:
  - the difference is a's mean accuracy over its seeds minus b's (metrics.json's test_top1 of a minus b's);
  - p_value is the raw two-sided p of one t test for every pair of the run, whose variance adds seed-to-seed
    variance (pooled over the run's strategies) to that of the test images drawn; with one seed everywhere
    it is the paired test of the two trained networks on the images alone, which holds for them only;
  - p_holm is Holm's adjustment over all pairs of that metric, and `significant` is p_holm < SIGNIFICANCE;
  - the interval inverts the same test at Holm's level for the pair (confidence in ci_level), so it
    excludes 0 exactly when the pair is significant: the interval and the decision never disagree.
The numbers are a pure function of the predictions: the file is byte-reproducible.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from transfer import paths
from transfer.atomic import write_json
from transfer.errors import UserError
from transfer.statistics.paired_tests import NETWORKS_T, holm, holm_levels, paired_test
from transfer.statistics.run_variance import RunVariance

SIGNIFICANCE = 0.05  # family-wise: after Holm's correction over the pairs, per metric
# |top-1 from the predictions - metrics.json's test_top1| above this means they come from different runs.
# metrics.json rounds to 6 digits (5e-7 each time) torchmetrics' float32 count / total (under 1e-7); one image
# of 100,000 is 1e-5, so any mismatched image count is caught for test sets up to that size.
ACCURACY_TOLERANCE = 2e-6  # a mean over seeds of rounded values, rounded again: two roundings
METRICS = {"top1": "test_top1", "top5": "test_top5"}  # row prefix -> metrics.json key
PREFIXES = {"top1": "", "top5": "top5_"}  # top-1 keeps the original field names (ci_low, p_value, ...)


@dataclass(frozen=True)
class StrategyPredictions:
    """One strategy's correctness on each test image, for each seed."""

    name: str
    top1_correct: np.ndarray  # (images, seeds) bool
    top5_correct: np.ndarray  # (images, seeds) bool
    metrics: dict  # its metrics.json

    def correct(self, metric: str) -> np.ndarray:
        """Correctness (images, seeds) in "top1" or "top5"."""
        return self.top1_correct if metric == "top1" else self.top5_correct


def metric_fields(run: RunVariance, a: StrategyPredictions, b: StrategyPredictions, metric: str) -> dict:
    """The test of a minus b in one metric, with what the row needs before Holm's correction."""
    test = paired_test(run, run.names.index(a.name), run.names.index(b.name))
    reported = a.metrics[METRICS[metric]] - b.metrics[METRICS[metric]]
    return {"test": test, "p": test.p_value(), "reported": reported}


def metric_run(loaded: dict[str, StrategyPredictions], metric: str) -> RunVariance:
    """The run's variance model of one metric: every strategy's correctness, seed spread pooled over them."""
    return RunVariance.from_correctness({name: prediction.correct(metric) for name, prediction in loaded.items()})


def corrected_fields(tested: list[dict], metric: str) -> list[dict]:
    """Each pair's fields of one metric after Holm's correction over all pairs: interval, p, decision."""
    raw = [entry["p"] for entry in tested]
    adjusted = holm(raw)
    levels = holm_levels(raw, adjusted, SIGNIFICANCE)
    prefix = PREFIXES[metric]
    rows = []
    for entry, p_holm, level in zip(tested, adjusted, levels, strict=True):
        test, significant = entry["test"], p_holm < SIGNIFICANCE
        low, high = test.interval(level, significant)
        # Centred where the difference is reported: metrics.json's means differ from the predictions'
        # by their rounding (under 2 ACCURACY_TOLERANCE).
        shift = entry["reported"] - test.diff
        rows.append(
            {
                f"{prefix}diff" if prefix else "top1_diff": round(entry["reported"], 6),
                f"{prefix}ci_low": round(low + shift, 6),
                f"{prefix}ci_high": round(high + shift, 6),
                f"{prefix}ci_level": float(f"{1 - level:.6g}"),
                f"{prefix}p_value": float(f"{entry['p']:.6g}"),
                f"{prefix}p_holm": float(f"{p_holm:.6g}"),
                f"{prefix}significant": significant,
                f"{prefix}test": test.name,
            }
        )
    return rows


def compare_loaded(loaded: dict[str, StrategyPredictions]) -> list[dict]:
    """comparison.json's rows from every strategy's correctness: every unordered pair, sorted by name."""
    pairs = list(itertools.combinations(sorted(loaded), 2))
    rows = [
        {
            "a": a,
            "b": b,
            "n_images": len(loaded[a].top1_correct),
            "n_seeds": [loaded[a].top1_correct.shape[1], loaded[b].top1_correct.shape[1]],  # [a's, b's]
        }
        for a, b in pairs
    ]
    for metric in METRICS:
        run = metric_run(loaded, metric)
        tested = [metric_fields(run, loaded[a], loaded[b], metric) for a, b in pairs]
        for row, fields in zip(rows, corrected_fields(tested, metric), strict=True):
            row.update(fields)
    return rows


def reference_test_labels() -> np.ndarray:
    """The prepared test set's labels (N,), the reference every predictions file must match."""
    try:
        with np.load(paths.PREPARED_PATH, allow_pickle=False) as arrays:
            return arrays["test_labels"]
    except FileNotFoundError:
        raise UserError(f"prepared data {paths.PREPARED_PATH} is missing; run: dvc repro prepare") from None


def read_predictions(name: str, seed: int, labels: np.ndarray) -> np.ndarray:
    """One seed's top-5 (N, k) of strategy name, checked against the test labels; a one-line UserError otherwise."""
    path = paths.predictions_path(name, seed)
    rerun = f"run: dvc repro {paths.run_stage_name(name)}"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            top5, saved_labels = arrays["top5"], arrays["labels"]
    except FileNotFoundError:
        raise UserError(f"predictions of strategy {name} are missing: {path}; {rerun}") from None
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"predictions of strategy {name} in {path} cannot be read ({error}); {rerun}") from None
    if top5.ndim != 2 or len(top5) != len(labels) or saved_labels.shape != labels.shape:
        raise UserError(
            f"predictions of strategy {name} in {path} cover {len(saved_labels)} images, the test set has "
            f"{len(labels)}: they come from another test set; {rerun}"
        )
    if not np.array_equal(saved_labels, labels):
        differing = int(np.count_nonzero(saved_labels != labels))
        raise UserError(
            f"predictions of strategy {name} in {path} have labels that differ from the test set's at "
            f"{differing} of {len(labels)} images: they come from another test set; {rerun}"
        )
    return top5


def load_strategy(name: str, seeds: list[int], metrics: dict, labels: np.ndarray) -> StrategyPredictions:
    """Correctness of every seed of strategy name, checked against its metrics.json."""
    if metrics.get("num_seeds", len(seeds)) != len(seeds):
        raise UserError(
            f"strategy {name} has predictions of {len(seeds)} seed(s) {seeds} in {paths.predictions_dir(name)}/, "
            f"but {paths.metrics_path(name)} says num_seeds {metrics['num_seeds']}: they come from different runs; "
            f"run: dvc repro {paths.run_stage_name(name)}"
        )
    top5 = np.stack([read_predictions(name, seed, labels) for seed in seeds], axis=1)  # (images, seeds, k)
    top1_correct = top5[:, :, 0] == labels[:, None]
    predicted_top1 = float(top1_correct.mean())
    if abs(predicted_top1 - metrics["test_top1"]) > ACCURACY_TOLERANCE:
        raise UserError(
            f"predictions of strategy {name} in {paths.predictions_dir(name)}/ score test top-1 {predicted_top1:.6f}, "
            f"but {paths.metrics_path(name)} says {metrics['test_top1']}: they come from different runs; "
            f"run: dvc repro {paths.run_stage_name(name)}"
        )
    top5_correct = (top5 == labels[:, None, None]).any(axis=2)
    return StrategyPredictions(name, top1_correct, top5_correct, metrics)


def load_strategies(metrics: dict[str, dict], seeds: dict[str, list[int]]) -> dict[str, StrategyPredictions]:
    """Every strategy's correctness, checked against the test labels and its metrics.json, in the order given."""
    labels = reference_test_labels()
    return {name: load_strategy(name, seeds[name], metrics[name], labels) for name in metrics}


def compare_strategies(loaded: dict[str, StrategyPredictions]) -> list[dict]:
    """comparison.json's rows: every unordered pair of strategies, sorted by name (a before b)."""
    if len(loaded) < 2:
        return []
    return compare_loaded({name: loaded[name] for name in sorted(loaded)})


def points(fraction: float) -> str:
    """A difference in accuracy as percentage points, one decimal."""
    return f"{100 * fraction:.1f}"


def p_text(p_value: float) -> str:
    """'p < 0.001' or 'p = 0.041'."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def field(pair: dict, prefix: str, key: str) -> object:
    """A pair's field of top-1 (prefix "") or top-5 (prefix "top5_"); top-1's difference is top1_diff."""
    return pair["top1_diff" if key == "diff" and not prefix else f"{prefix}{key}"]


def scope(pair: dict, prefix: str) -> str:
    """What the pair's test covers: these two trained networks, or training runs of the recipes."""
    if field(pair, prefix, "test") == NETWORKS_T:
        return "for these two trained networks only (one seed each)"
    return (
        f"over training runs ({pair['n_seeds'][0]} and {pair['n_seeds'][1]} seeds, the seed spread pooled over "
        "the run's strategies) and test images"
    )


def reading(pair: dict, prefix: str = "") -> str:
    """One line in words for a pair's top-1 (prefix "") or top-5 (prefix "top5_"): who beats whom, or chance."""
    a, b = pair["a"], pair["b"]
    diff, ci_low, ci_high, level = (field(pair, prefix, key) for key in ("diff", "ci_low", "ci_high", "ci_level"))
    p_values = f"{p_text(field(pair, prefix, 'p_value'))}, Holm {p_text(field(pair, prefix, 'p_holm'))}"
    metric = "top-5" if prefix else "top-1"
    if not field(pair, prefix, "significant"):
        return f"{metric}: no significant difference between {a} and {b} ({p_values}; {scope(pair, prefix)})"
    if diff < 0:  # read from the winner's side
        a, b, diff, ci_low, ci_high = b, a, -diff, -ci_high, -ci_low
    return (
        f"{metric}: {a} beats {b} by {points(diff)} points, {level:.2%} CI [{points(ci_low)}, {points(ci_high)}], "
        f"{p_values}; {scope(pair, prefix)}"
    )


def comparison_section(pairs: list[dict], strategies: list[str]) -> str:
    """report.md's section: the table of pairs and one reading per pair, or why there is none."""
    section = "## Paired comparison on the test images\n\n"
    if not pairs:
        return section + (
            f"No comparison: {len(strategies)} strategy defined ({', '.join(strategies) or 'none'}), "
            "and a paired comparison needs at least two.\n"
        )
    section += (
        "Each row is strategy a minus strategy b on the same test images, in percentage points "
        "(positive: a is better). p is the raw two-sided p-value of a t test whose variance adds the seed-to-seed "
        "variance (pooled over the strategies with two seeds or more) to that of the test images drawn; when no "
        "strategy has two seeds, it is the paired test of the two trained networks on the images alone (it holds "
        "for these networks only: another seed could move it). "
        f"Holm p corrects for the {len(pairs)} pairs, separately for top-1 and top-5; a difference is "
        f"significant when Holm p < {SIGNIFICANCE}. The interval inverts the same test at Holm's level for the "
        "pair (its confidence is in comparison.json's ci_level), so it excludes 0 exactly when the difference "
        "is significant.\n\n"
        "| a | b | top-1 difference | interval | p | Holm p | top-5 difference | interval | p | Holm p "
        "| test | seeds (a, b) |\n"
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---|---|\n"
    )
    for pair in pairs:
        section += (
            f"| {pair['a']} | {pair['b']} | {points(pair['top1_diff'])} "
            f"| [{points(pair['ci_low'])}, {points(pair['ci_high'])}] | {pair['p_value']:.3g} | {pair['p_holm']:.3g} "
            f"| {points(pair['top5_diff'])} | [{points(pair['top5_ci_low'])}, {points(pair['top5_ci_high'])}] "
            f"| {pair['top5_p_value']:.3g} | {pair['top5_p_holm']:.3g} "
            f"| {pair['test']} | {pair['n_seeds'][0]}, {pair['n_seeds'][1]} |\n"
        )
    section += "\n" + "".join(f"- {reading(pair)}; {reading(pair, 'top5_')}\n" for pair in pairs)
    return section


def write_comparison(pairs: list[dict], strategies: list[str]) -> str:
    """Write plots/comparison.json; return report.md's section."""
    write_json(paths.COMPARISON_PATH, {"pairs": pairs})
    return comparison_section(pairs, strategies)
