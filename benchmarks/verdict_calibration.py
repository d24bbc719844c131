"""Calibration of the verdict's rule (transfer/statistics/decision.py) by simulation: the rule as applied, best picked.

Run as: python -m benchmarks.verdict_calibration [--replicates 400]

Five strategies on N test images, each trained with n seeds. Image i has a difficulty p_i drawn from
Beta(0.3, 0.2) (mean 0.6; most images nearly always right or nearly always wrong, so two runs of one strategy
disagree on ~16% of images); on OWN_DIFFICULTY_SHARE of the images a strategy draws its own difficulty
instead (different strategies disagree on ~26%). A training run (strategy s, seed r) shifts every image's
probability by delta_sr = offset_s + spread x z_sr, weighted by p (1 - p) / E[p (1 - p)] so that no
probability leaves [0, 1] and the run's expected accuracy over the image population (POOL_SIZE difficulties
drawn once per cell) is exactly its mean + delta_sr. The recipe's true accuracy is that mean + offset_s; one
network's is the mean + delta_sr.
The first strategy's offset is `diff` points, the others' 0.

Per cell (seeds, images, spread, diff): the rule's decisions against the truth it speaks of (the recipes
with 2+ seeds, these networks with one):
- false worse: a strategy called worse whose truth is at least the observed best's; per comparison (of the
  k - 1 with the best) and family-wise (any in a replicate);
- false equivalent: called equivalent though the true best is ahead of it by the margin or more;
- coverage: the comparison's interval holds the true (strategy - observed best); per comparison, and all
  k - 1 at once;
- power: a strategy truly `diff` behind the first is called worse; per comparison, and all four at once;
- recipe fp (one seed only): what the networks' worse-calls would be as claims of the recipes (at diff 0).
"""

import argparse
import itertools
import time
from dataclasses import dataclass

import numpy as np

from transfer.statistics.decision import EQUIVALENT, WORSE, decide

STRATEGIES = ("a", "b", "c", "d", "e")
DIFFICULTY = (0.3, 0.2)  # Beta parameters of an image's probability of being right: mean 0.6
POOL_SIZE = 200_000  # difficulties drawn once per cell; each run's images are drawn from them
OWN_DIFFICULTY_SHARE = 0.3  # share of images on which a strategy draws its own difficulty
MARGIN = 0.01  # report.equivalence_margin of the committed params: 1 point
SEEDS = (1, 3, 5)
IMAGES = (1000, 10_000)
SPREADS = (0.2, 0.5, 1.0)  # points: sd of a run's shift
DIFFS = (0.0, 1.0, 2.0)  # points: the first strategy's lead
COLUMNS = (
    "false_worse",
    "false_worse_familywise",
    "false_equivalent",
    "coverage",
    "coverage_all",
    "power",
    "power_all",
    "recipe_false_worse",
)


@dataclass(frozen=True)
class DifficultyPool:
    """The image population of one cell: difficulties drawn once, images drawn from them by index (fast)."""

    difficulty: np.ndarray  # (POOL_SIZE,) float32
    weight: np.ndarray  # p (1 - p) / its mean over the pool: a run's shift moves the pool's mean by exactly delta

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "DifficultyPool":
        """POOL_SIZE difficulties from Beta(DIFFICULTY)."""
        difficulty = rng.beta(*DIFFICULTY, POOL_SIZE)
        spread = difficulty * (1 - difficulty)
        return cls(difficulty.astype(np.float32), (spread / spread.mean()).astype(np.float32))


def simulate_run(rng: np.random.Generator, pool: DifficultyPool, cell: tuple) -> tuple:
    """One run's correctness (name -> (images, seeds) bool), and the true accuracies of its recipes and networks,
    less the pool's mean accuracy (only differences are scored)."""
    seeds, images, spread, diff = cell
    strategies = len(STRATEGIES)
    common = rng.integers(0, POOL_SIZE, images)
    own = rng.integers(0, POOL_SIZE, (strategies, images))
    index = np.where(rng.random((strategies, images), dtype=np.float32) < OWN_DIFFICULTY_SHARE, own, common)
    offsets = np.zeros(strategies)
    offsets[0] = diff / 100
    shifts = offsets[:, None] + rng.normal(0.0, spread / 100, (strategies, seeds))  # (strategies, seeds)
    # p + shift p (1 - p) / E[p (1 - p)] stays in [0, 1] while |shift| <= E[p (1 - p)], 8 points: far past any here.
    moved = shifts.astype(np.float32)[:, :, None] * pool.weight[index][:, None, :]  # (strategies, seeds, images)
    probability = pool.difficulty[index][:, None, :] + moved
    correct = rng.random((strategies, seeds, images), dtype=np.float32) < probability
    runs = {name: correct[position].T for position, name in enumerate(STRATEGIES)}
    return runs, offsets, shifts[:, 0]


def score(answer: dict, truth: np.ndarray, recipes: np.ndarray, diff: float) -> dict:
    """The replicate's tallies against truth (the accuracies the claims speak of)."""
    best = STRATEGIES.index(answer["best"])
    rows = answer["comparisons"]
    indexes = [STRATEGIES.index(row["strategy"]) for row in rows]
    worse = np.array([row["status"] == WORSE for row in rows])
    false_worse = worse & (truth[indexes] >= truth[best])
    equivalent = np.array([row["status"] == EQUIVALENT for row in rows])
    false_equivalent = equivalent & (truth.max() - truth[indexes] >= MARGIN - 1e-12)
    true_diff = truth[indexes] - truth[best]
    covered = np.array([row["ci_low"] <= value <= row["ci_high"] for row, value in zip(rows, true_diff, strict=True)])
    behind = [position for position, index in enumerate(indexes) if index != 0]  # the four behind the first
    called = {STRATEGIES.index(row["strategy"]) for row in rows if row["status"] == WORSE}
    return {
        "false_worse": false_worse.mean(),
        "false_worse_familywise": float(false_worse.any()),
        "false_equivalent": false_equivalent.mean(),
        "coverage": covered.mean(),
        "coverage_all": float(covered.all()),
        "power": float(np.mean([index in called for index in range(1, len(STRATEGIES))])) if diff else np.nan,
        "power_all": float(called >= set(range(1, len(STRATEGIES)))) if diff else np.nan,
        "recipe_false_worse": (worse & (recipes[indexes] >= recipes[best])).mean(),
        "behind": len(behind),
    }


def simulate_cell(seeds: int, images: int, spread: float, diff: float, replicates: int, seed: int = 0) -> dict:
    """Mean of each COLUMNS tally over replicates of one cell (spread and diff in points)."""
    rng = np.random.default_rng([seed, seeds, images, int(spread * 100), int(diff * 100)])
    pool = DifficultyPool.draw(rng)
    tallies = []
    for _ in range(replicates):
        runs, recipes, networks = simulate_run(rng, pool, (seeds, images, spread, diff))
        truth = recipes if seeds > 1 else networks
        tallies.append(score(decide(runs, MARGIN), truth, recipes, diff))
    return {column: float(np.mean([tally[column] for tally in tallies])) for column in COLUMNS}


def percent(value: float) -> str:
    """A rate as a percentage with one decimal, or '-' where it does not apply."""
    return "-" if np.isnan(value) else f"{100 * value:.1f}"


def table(replicates: int) -> str:
    """The full calibration table, markdown."""
    lines = [
        "| seeds | images | spread | diff | false worse | family-wise | false equivalent | coverage | all covered "
        "| power | power all | as recipes: false worse |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seeds, images, spread, diff in itertools.product(SEEDS, IMAGES, SPREADS, DIFFS):
        cell = simulate_cell(seeds, images, spread, diff, replicates)
        recipe = percent(cell["recipe_false_worse"]) if seeds == 1 and diff == 0 else "-"
        lines.append(
            f"| {seeds} | {images:,} | {spread} | {diff:g} | "
            + " | ".join(percent(cell[column]) for column in COLUMNS[:-1])
            + f" | {recipe} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: print the calibration table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verdict_calibration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--replicates", type=int, default=400, help="simulated runs per cell (default 400)")
    arguments = parser.parse_args(argv)
    start = time.perf_counter()
    print(table(arguments.replicates))
    print(f"\n{arguments.replicates} replicates per cell, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
