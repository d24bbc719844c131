"""Which strategy is best, and what is shown of each other one against it: the rule behind plots/verdict.json.

decide(correct, margin) takes each strategy's correctness on the same test images (name -> bool array of
shape (images, seeds), in params.yaml's order) and returns a plain dict; it reads no file, so it serves any
subset of results (one training-set size, one metric). The rule:

- best: the strategy with the highest mean accuracy (ties: the first given). It is picked from the data, so
  every decision below is calibrated with that selection included (docs/statistics.md simulates it).
- Each other strategy i is compared with the best only (k - 1 comparisons, not all k (k - 1) / 2 pairs), by
  a step-down in the order of its t statistic (mean_best - mean_i) / se (variance from run_variance.py):
  with m strategies still undecided (the best included) the step's one-sided level is
  significance / (m (m - 1)), Bonferroni over every ordered pair of those m. Counting all their pairs, not
  only m - 1 comparisons, is what the data-chosen best costs: when m strategies are truly equal, the best of
  them is the top of their range, and the range of m means exceeds an (m - 1)-comparison bound far more often
  than the nominal level (family-wise 13-14% instead of 5% for five equal strategies in the simulation).
  A strategy whose interval lies below 0 is shown worse and leaves the undecided set; the first that is not
  ends the step-down, and every strategy left gets the interval of that last step.
- Each comparison's interval of (strategy - best) is diff +- critical x se at its step's level; it excludes
  0 exactly when the strategy is shown worse.
- status: `equivalent` when the interval's lower end lies above -margin (shown within the margin of the
  best: the practical claim, even where a smaller gap is also shown), else `worse` when shown worse, else
  `inconclusive`; the best is `best`.
- claims_for: `recipes` when every strategy has two seeds or more, else `networks`: the statements hold for
  these trained networks on the images' population, not for the training recipes.
- detectable_diff: the true top-1 gap the rule's first step finds with 80% power at this run's variance;
  seeds_for_one_point: the fewest seeds per strategy for which that is 1 point, or None (no seed spread
  measured, or the test images alone allow no less: image_floor is the gap infinitely many seeds would give).
"""

import bisect
import functools
import math

import numpy as np

from transfer.statistics.distributions import student_t_critical
from transfer.statistics.run_variance import RunVariance, satterthwaite

SIGNIFICANCE = 0.05  # family-wise, over the comparisons with the best
POWER = 0.80  # of detectable_diff
ONE_POINT = 0.01  # of top-1: the gap seeds_for_one_point is about
MAX_SEEDS = 50  # seeds_for_one_point searches up to this many seeds per strategy
BEST, WORSE, EQUIVALENT, INCONCLUSIVE = "best", "worse", "equivalent", "inconclusive"
# Critical values are computed once per (level, df): the Satterthwaite df is rounded down to one of these,
# which only widens an interval (fewer df, larger critical value). Above the last, the last is used.
DF_GRID = (*range(1, 31), 40, 60, 80, 120, 240, 480, 1000)
T_SEARCH_HIGH = 1e4  # above any one-sided critical value of a level over 1e-12 at 1 df or more


def one_sided_critical(level: float, degrees_of_freedom: float) -> float:
    """The c with P(T >= c) = level for Student's t, df rounded down to DF_GRID."""
    return grid_critical(level, DF_GRID[max(bisect.bisect_right(DF_GRID, degrees_of_freedom) - 1, 0)])


@functools.lru_cache(maxsize=1024)
def grid_critical(level: float, grid_df: int) -> float:
    """one_sided_critical at a df of DF_GRID: a few dozen of these serve every run."""
    return student_t_critical(2 * level, grid_df, 0.0, T_SEARCH_HIGH)


def step_level(significance: float, undecided: int) -> float:
    """One-sided level of a step with `undecided` strategies left, the best included: all their ordered pairs."""
    return significance / (undecided * (undecided - 1))


def step_down(run: RunVariance, best: int, significance: float) -> dict[int, tuple[float, bool]]:
    """Strategy number -> (its interval's one-sided level, shown worse), for every strategy but best."""
    others = [index for index in range(len(run.names)) if index != best]
    pairs = {index: run.pair(index, best) for index in others}
    order = sorted(others, key=lambda index: pairs[index].diff / math.sqrt(pairs[index].variance))
    decided, undecided = {}, len(run.names)
    for index in order:
        pair = pairs[index]
        level = step_level(significance, undecided)
        if pair.diff + one_sided_critical(level, pair.degrees_of_freedom) * math.sqrt(pair.variance) >= 0:
            break
        decided[index] = (level, True)
        undecided -= 1
    left = [index for index in others if index not in decided]
    return decided | {index: (step_level(significance, undecided), False) for index in left}


def comparison_row(run: RunVariance, index: int, best: int, decision: tuple[float, bool], margin: float) -> dict:
    """One strategy against the best: difference, interval, status."""
    pair = run.pair(index, best)
    level, worse = decision
    error = one_sided_critical(level, pair.degrees_of_freedom) * math.sqrt(pair.variance)
    low, high = pair.diff - error, pair.diff + error
    status = EQUIVALENT if low > -margin else WORSE if worse else INCONCLUSIVE
    return {
        "strategy": run.names[index],
        "diff": pair.diff,
        "ci_low": low,
        "ci_high": high,
        "ci_level": 1 - 2 * level,  # two-sided confidence; df rounded down makes it at least this
        "status": status,
    }


def first_step_gap(run: RunVariance, significance: float, seed_part: tuple[float, int], image_part: float) -> float:
    """The true gap the first step detects with POWER, for a comparison of these variance parts ((value, df) for the
    seeds'; the images' has N - 1 df)."""
    seed_value, seed_df = seed_part
    df = satterthwaite(seed_value, seed_df, image_part, run.images - 1)
    critical = one_sided_critical(step_level(significance, len(run.names)), df)
    return (critical + one_sided_critical(1 - POWER, df)) * math.sqrt(seed_value + image_part)


def power_fields(run: RunVariance, best: int, significance: float) -> dict:
    """detectable_diff, seeds_for_one_point and image_floor (module docstring), for comparisons with the best."""
    others = [index for index in range(len(run.names)) if index != best]
    if not others:
        return {"detectable_diff": None, "seeds_for_one_point": None, "image_floor": None}
    variances = [run.pair(index, best).variance for index in others]
    image_part = float(np.mean([run.image_part(index, best) for index in others])) / run.images
    seed_part = (max(float(np.mean(variances)) - image_part, 0.0), run.seed_df)
    needed = None
    if run.seed_df:
        per_seed, strategies = 2 * run.seed_variance, len(run.names)
        needed = next(
            (
                seeds
                for seeds in range(2, MAX_SEEDS + 1)
                if first_step_gap(run, significance, (per_seed / seeds, strategies * (seeds - 1)), image_part)
                <= ONE_POINT
            ),
            None,
        )
    return {
        "detectable_diff": first_step_gap(run, significance, seed_part, image_part),
        "seeds_for_one_point": needed,
        "image_floor": first_step_gap(run, significance, (0.0, 0), max(image_part, 1 / run.images**2)),
    }


def decide(correct: dict[str, np.ndarray], margin: float, significance: float = SIGNIFICANCE) -> dict:
    """The verdict's statistics for name -> correctness (images, seeds) on the same images; see the module docstring."""
    run = RunVariance.from_correctness(correct)
    best = int(np.argmax(run.means))  # the first of equals
    decisions = step_down(run, best, significance)
    rows = [comparison_row(run, index, best, decisions[index], margin) for index in sorted(decisions)]
    status = {name: BEST if index == best else None for index, name in enumerate(run.names)}
    status |= {row["strategy"]: row["status"] for row in rows}
    return {
        "best": run.names[best],
        "claims_for": run.claims_for,
        "status": status,
        "comparisons": rows,
        "means": dict(zip(run.names, run.means, strict=True)),
        "seeds": dict(zip(run.names, run.seeds, strict=True)),
        "images": run.images,
        "equivalence_margin": margin,
        "significance": significance,
        "seed_sd": math.sqrt(run.seed_variance) if run.seed_df else None,
        "seed_df": run.seed_df,
        **power_fields(run, best, significance),
    }
