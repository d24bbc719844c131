"""Paired statistics between strategies on the same test images: is a difference in accuracy larger than chance?

Every strategy is scored on the same test images, so two strategies are compared image by image.
An image's correctness under a strategy is 1 or 0 per seed; with several seeds it is the mean over
them. For each unordered pair (a, b), with d_i = correctness of a on image i minus that of b:
  - the difference is mean(d), equal to metrics.json's test_top1 of a minus that of b;
  - a 95% percentile bootstrap interval resamples the images (the same images for both strategies,
    so their pairing is kept): BOOTSTRAP_RESAMPLES resamples drawn from BOOTSTRAP_SEED;
  - the p-value, when both strategies have one seed, is the exact two-sided McNemar test on the
    discordant images (a right and b wrong: n_ab; the reverse: n_ba); otherwise a paired sign-flip
    permutation test of mean(d): PERMUTATIONS random sign flips of each image's d_i drawn from
    PERMUTATION_SEED, p = (flips with |mean| >= |observed| + 1) / (PERMUTATIONS + 1).
The same for top-5. The numbers are a pure function of the predictions: the file is byte-reproducible.
"""

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from transfer import paths
from transfer.atomic import write_json
from transfer.errors import UserError

CONFIDENCE = 0.95  # of the bootstrap interval
BOOTSTRAP_RESAMPLES = 10_000  # Monte Carlo error of a 2.5% quantile: about 0.03 standard errors of the difference
BOOTSTRAP_SEED = 0
PERMUTATIONS = 10_000  # the smallest p-value the sign-flip test can give is 1 / 10,001
PERMUTATION_SEED = 0
SIGNIFICANCE = 0.05  # p below this reads as a real difference
# |top-1 from the predictions - metrics.json's test_top1| above this means they come from different runs.
# metrics.json rounds to 6 digits (5e-7 each time) torchmetrics' float32 count / total (under 1e-7); one image
# of 100,000 is 1e-5, so any mismatched image count is caught for test sets up to that size.
ACCURACY_TOLERANCE = 2e-6  # a mean over seeds of rounded values, rounded again: two roundings
MCNEMAR, SIGN_FLIP = "mcnemar_exact", "sign_flip_permutation"


@dataclass(frozen=True)
class StrategyPredictions:
    """One strategy's correctness on each test image, for each seed."""

    name: str
    top1_correct: np.ndarray  # (images, seeds) bool
    top5_correct: np.ndarray  # (images, seeds) bool
    metrics: dict  # its metrics.json


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts: 2 P(X <= min) for X ~ Binomial(n, 1/2), at most 1."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    term, tail = 1, 1  # math.comb(discordant, k) and the sum up to k, updated in place: exact big integers
    for k in range(min(a_only, b_only)):
        term = term * (discordant - k) // (k + 1)
        tail += term
    return float(min(Fraction(1), Fraction(2 * tail, 2**discordant)))


def paired_differences(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[np.ndarray, int]:
    """Per image, a's mean correctness over its seeds minus b's, as integer numerators (images,) over a denominator.

    Integers keep every comparison in the tests exact: d_i = numerators[i] / denominator.
    """
    a_seeds, b_seeds = a_correct.shape[1], b_correct.shape[1]
    numerators = a_correct.sum(axis=1, dtype=np.int64) * b_seeds - b_correct.sum(axis=1, dtype=np.int64) * a_seeds
    return numerators, a_seeds * b_seeds


def bootstrap_interval(
    numerators: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval (CONFIDENCE) of mean(numerators), resampling the images with replacement.

    A resample's mean depends only on how often each distinct value is drawn, so the counts are drawn
    from a multinomial over the distinct values: the same distribution as drawing images, at any size.
    """
    values, counts = np.unique(numerators, return_counts=True)
    images = len(numerators)
    draws = np.random.default_rng(seed).multinomial(images, counts / images, size=resamples)  # (resamples, values)
    means = draws @ values / images
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def sign_flip_p(numerators: np.ndarray, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> float:
    """Two-sided paired permutation p-value of mean(numerators) = 0: each image's difference gets a random sign.

    As in bootstrap_interval, only how many images of each distinct |difference| flip matters:
    a Binomial(count, 1/2) per value, the same distribution as flipping image by image.
    """
    magnitudes, counts = np.unique(np.abs(numerators[numerators != 0]), return_counts=True)
    observed = abs(int(numerators.sum()))
    positive = np.random.default_rng(seed).binomial(counts, 0.5, size=(permutations, len(counts)))
    flipped_sums = np.abs((2 * positive - counts) @ magnitudes)  # integers: the comparison below is exact
    return float((np.count_nonzero(flipped_sums >= observed) + 1) / (permutations + 1))


@dataclass(frozen=True)
class PairedResult:
    """a minus b in one accuracy, over the same test images."""

    diff: float  # fraction 0-1; positive when a is better
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # MCNEMAR or SIGN_FLIP


def paired_test(a_correct: np.ndarray, b_correct: np.ndarray, reported_diff: float) -> PairedResult:
    """Interval and p-value of a's correctness (images, seeds) minus b's, around the reported difference.

    reported_diff is that of the two metrics.json means; the bootstrap interval is moved by the rounding
    between it and the predictions' mean difference (under 2 ACCURACY_TOLERANCE), so that it is centred
    where the difference is reported.
    """
    numerators, denominator = paired_differences(a_correct, b_correct)
    low, high = bootstrap_interval(numerators)
    if a_correct.shape[1] == 1 and b_correct.shape[1] == 1:
        p_value, test = mcnemar_exact_p(int((numerators > 0).sum()), int((numerators < 0).sum())), MCNEMAR
    else:
        p_value, test = sign_flip_p(numerators), SIGN_FLIP
    shift = reported_diff - float(numerators.mean()) / denominator
    return PairedResult(
        round(reported_diff, 6),
        round(low / denominator + shift, 6),
        round(high / denominator + shift, 6),
        float(f"{p_value:.6g}"),
        test,
    )


def compare_pair(a: StrategyPredictions, b: StrategyPredictions) -> dict:
    """One comparison.json row: a minus b in test top-1 (the issue's field names), then in top-5 (top5_ prefix)."""
    top1 = paired_test(a.top1_correct, b.top1_correct, a.metrics["test_top1"] - b.metrics["test_top1"])
    top5 = paired_test(a.top5_correct, b.top5_correct, a.metrics["test_top5"] - b.metrics["test_top5"])
    return {
        "a": a.name,
        "b": b.name,
        "top1_diff": top1.diff,
        "ci_low": top1.ci_low,
        "ci_high": top1.ci_high,
        "p_value": top1.p_value,
        "test": top1.test,
        "n_images": len(a.top1_correct),
        "n_seeds": [a.top1_correct.shape[1], b.top1_correct.shape[1]],  # [a's, b's]
        "top5_diff": top5.diff,
        "top5_ci_low": top5.ci_low,
        "top5_ci_high": top5.ci_high,
        "top5_p_value": top5.p_value,
        "top5_test": top5.test,
    }


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
    rerun = f"run: dvc repro train@{name}"
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
    top5 = np.stack([read_predictions(name, seed, labels) for seed in seeds], axis=1)  # (images, seeds, k)
    top1_correct = top5[:, :, 0] == labels[:, None]
    predicted_top1 = float(top1_correct.mean())
    if abs(predicted_top1 - metrics["test_top1"]) > ACCURACY_TOLERANCE:
        raise UserError(
            f"predictions of strategy {name} in {paths.predictions_dir(name)}/ score test top-1 {predicted_top1:.6f}, "
            f"but {paths.metrics_path(name)} says {metrics['test_top1']}: they come from different runs; "
            f"run: dvc repro train@{name}"
        )
    top5_correct = (top5 == labels[:, None, None]).any(axis=2)
    return StrategyPredictions(name, top1_correct, top5_correct, metrics)


def compare_strategies(metrics: dict[str, dict], seeds: dict[str, list[int]]) -> list[dict]:
    """comparison.json's rows: every unordered pair of strategies, sorted by name (a before b)."""
    if len(metrics) < 2:
        return []
    labels = reference_test_labels()
    loaded = {name: load_strategy(name, seeds[name], metrics[name], labels) for name in sorted(metrics)}
    return [compare_pair(loaded[a], loaded[b]) for a, b in itertools.combinations(sorted(loaded), 2)]


def points(fraction: float) -> str:
    """A difference in accuracy as percentage points, one decimal."""
    return f"{100 * fraction:.1f}"


def p_text(p_value: float) -> str:
    """'p < 0.001' or 'p = 0.041'."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def reading(pair: dict, prefix: str = "") -> str:
    """One line in words for a pair's top-1 (prefix "") or top-5 (prefix "top5_"): who beats whom, or chance."""
    a, b = pair["a"], pair["b"]
    diff = pair[f"{prefix}diff" if prefix else "top1_diff"]
    ci_low, ci_high, p_value = (pair[f"{prefix}{key}"] for key in ("ci_low", "ci_high", "p_value"))
    metric = "top-5" if prefix else "top-1"
    if p_value >= SIGNIFICANCE or diff == 0:
        return f"{metric}: no significant difference between {a} and {b} ({p_text(p_value)})"
    if diff < 0:  # read from the winner's side
        a, b, diff, ci_low, ci_high = b, a, -diff, -ci_high, -ci_low
    return (
        f"{metric}: {a} beats {b} by {points(diff)} points, 95% CI [{points(ci_low)}, {points(ci_high)}], "
        f"{p_text(p_value)}"
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
        "(positive: a is better). The 95% CI is a paired bootstrap over the test images "
        f"({BOOTSTRAP_RESAMPLES:,} resamples); p is the exact McNemar test when both strategies have one seed, "
        f"else a paired sign-flip permutation test ({PERMUTATIONS:,} flips). An interval that excludes 0 and "
        f"p < {SIGNIFICANCE} say the difference is larger than the chance of which test images were drawn; "
        "with one seed each they say nothing about how much another training seed would move it.\n\n"
        "| a | b | top-1 difference | 95% CI | p | top-5 difference | 95% CI | p | test | seeds (a, b) |\n"
        "|---|---|---:|---|---:|---:|---|---:|---|---|\n"
    )
    for pair in pairs:
        section += (
            f"| {pair['a']} | {pair['b']} | {points(pair['top1_diff'])} "
            f"| [{points(pair['ci_low'])}, {points(pair['ci_high'])}] | {pair['p_value']:.3g} "
            f"| {points(pair['top5_diff'])} | [{points(pair['top5_ci_low'])}, {points(pair['top5_ci_high'])}] "
            f"| {pair['top5_p_value']:.3g} | {pair['test']} | {pair['n_seeds'][0]}, {pair['n_seeds'][1]} |\n"
        )
    section += "\n" + "".join(f"- {reading(pair)}; {reading(pair, 'top5_')}\n" for pair in pairs)
    return section


def write_comparison(pairs: list[dict], strategies: list[str]) -> str:
    """Write plots/comparison.json; return report.md's section."""
    write_json(paths.COMPARISON_PATH, {"pairs": pairs})
    return comparison_section(pairs, strategies)
