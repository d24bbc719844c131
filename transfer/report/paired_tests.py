"""Paired tests of strategy a minus strategy b on the same test images, each with the interval that inverts it.

Both tests answer "is a's accuracy different from b's?" with a two-sided p-value, and give, at any
two-sided level, the interval of differences the test would not reject. The interval at level g
excludes 0 exactly when p < g: a decision and its interval never disagree.

- One seed each (McNemar): the exact McNemar test on the discordant images (a right and b wrong: a_only;
  the reverse: b_only), and the exact Clopper-Pearson interval of a_only's share of them, scaled by
  discordant / images. Conditional on these two trained networks: another training seed is not accounted for.
- Otherwise (SeedImageT): the difference of the mean accuracies over seeds and images, with a variance that
  adds both sources of chance: which networks training produced (seed-to-seed variance of each strategy's
  accuracy) and which test images were drawn (the variance of the per-image difference, less the
  image-by-seed interaction both terms would otherwise count twice), as in a two-way crossed random-effects
  analysis of variance (images x seeds; Searle, Casella and McCulloch, "Variance Components", 1992, ch. 4).
  The statistic is referred to Student's t with Welch-Satterthwaite degrees of freedom (Welch, Biometrika
  1947; Satterthwaite, Biometrics 1946), so 3 seeds a side give about 4 degrees of freedom, not infinity.
  A strategy with one seed has no seed variance of its own: it borrows the other's (equal spread assumed).
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from transfer.report.distributions import binomial_upper_tail, bisect, student_t_critical, student_t_two_sided_p

MCNEMAR, SEED_IMAGE_T = "mcnemar_exact", "seed_and_image_t"
T_SEARCH_LIMIT = 1e6  # |t| beyond any critical value a level above 1e-300 needs


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


@dataclass(frozen=True)
class McNemar:
    """a minus b with one seed each, from the discordant images."""

    a_only: int
    b_only: int
    images: int
    name = MCNEMAR

    @property
    def diff(self) -> float:
        """a's accuracy minus b's, as a fraction of the images."""
        return (self.a_only - self.b_only) / self.images

    def p_value(self) -> float:
        """Exact two-sided McNemar p."""
        return mcnemar_exact_p(self.a_only, self.b_only)

    def interval(self, level: float, significant: bool) -> tuple[float, float]:
        """Clopper-Pearson interval at two-sided level, scaled to a difference; it excludes 0 iff significant.

        The bound's root lies above or below 1/2 by the same tail comparison that decides significance,
        so the bisection searches the half the decision names: floating-point ties cannot split them.
        """
        discordant = self.a_only + self.b_only
        if discordant == 0:
            return 0.0, 0.0
        x = self.a_only
        # Not significant: the interval of the share holds 1/2; significant: it lies wholly on diff's side.
        lower_bracket = (0.5, 1.0) if significant and self.diff > 0 else (0.0, 0.5)
        upper_bracket = (0.0, 0.5) if significant and self.diff < 0 else (0.5, 1.0)
        # P(X >= x | p) rises with p: the lower bound is where it reaches level / 2, the upper where
        # P(X <= x | p) = 1 - P(X >= x + 1 | p) falls to level / 2.
        low = 0.0 if x == 0 else bisect(lambda p: binomial_upper_tail(x, discordant, p), level / 2, *lower_bracket)
        high = (
            1.0
            if x == discordant
            else bisect(lambda p: binomial_upper_tail(x + 1, discordant, p), 1 - level / 2, *upper_bracket)
        )
        scale = discordant / self.images
        return scale * (2 * low - 1), scale * (2 * high - 1)


def interaction_mean_square(correct: np.ndarray) -> float:
    """Residual mean square of the two-way images x seeds table of 0/1 correctness (images, seeds): 0 with one seed.

    From sums, as the analysis-of-variance identity SS_residual = SS_total - SS_images - SS_seeds gives it.
    """
    images, seeds = correct.shape
    if seeds < 2:
        return 0.0
    image_sums = correct.sum(axis=1, dtype=np.int64)
    seed_sums = correct.sum(axis=0, dtype=np.int64)
    total = int(image_sums.sum())  # also the sum of squares: 0 and 1 are their own squares
    residual = total - (image_sums**2).sum() / seeds - (seed_sums**2).sum() / images + total**2 / (images * seeds)
    return float(residual / ((images - 1) * (seeds - 1)))


@dataclass(frozen=True)
class SeedImageT:
    """a minus b with seed-to-seed and image-sampling variance: a t statistic with Satterthwaite's df."""

    diff: float
    variance: float  # of diff
    degrees_of_freedom: float
    name = SEED_IMAGE_T

    @classmethod
    def from_correctness(cls, a_correct: np.ndarray, b_correct: np.ndarray) -> "SeedImageT":
        """From each strategy's correctness (images, seeds), the same images in the same order."""
        images = len(a_correct)
        a_seed_means = a_correct.sum(axis=0, dtype=np.int64) / images  # each seed's accuracy
        b_seed_means = b_correct.sum(axis=0, dtype=np.int64) / images
        a_seeds, b_seeds = len(a_seed_means), len(b_seed_means)
        a_spread = float(np.var(a_seed_means, ddof=1)) if a_seeds > 1 else None
        b_spread = float(np.var(b_seed_means, ddof=1)) if b_seeds > 1 else None
        if a_spread is None or b_spread is None:  # one side borrows: one estimate, with that side's df
            spread, spread_df = (b_spread, b_seeds - 1) if a_spread is None else (a_spread, a_seeds - 1)
            components = [(spread * (1 / a_seeds + 1 / b_seeds), spread_df)]
        else:
            components = [(a_spread / a_seeds, a_seeds - 1), (b_spread / b_seeds, b_seeds - 1)]
        per_image = a_correct.sum(axis=1, dtype=np.int64) / a_seeds - b_correct.sum(axis=1, dtype=np.int64) / b_seeds
        image_part = (
            float(np.var(per_image, ddof=1))
            - interaction_mean_square(a_correct) / a_seeds
            - interaction_mean_square(b_correct) / b_seeds
        )
        components.append((max(image_part, 0.0) / images, images - 1))
        variance = sum(value for value, _ in components)
        # Welch-Satterthwaite: the df of a sum of independent scaled chi-square estimates.
        denominator = sum(value**2 / df for value, df in components)
        degrees_of_freedom = variance**2 / denominator if denominator > 0 else math.inf
        return cls(float(a_seed_means.mean() - b_seed_means.mean()), variance, degrees_of_freedom)

    def p_value(self) -> float:
        """Two-sided p of diff = 0 under Student's t."""
        if self.variance == 0:
            return 1.0 if self.diff == 0 else 0.0
        return student_t_two_sided_p(self.diff / math.sqrt(self.variance), self.degrees_of_freedom)

    def interval(self, level: float, significant: bool) -> tuple[float, float]:
        """diff ± t critical x standard error at two-sided level; it excludes 0 iff significant.

        The critical value lies below |t| exactly when p < level: the bisection searches the side the
        decision names, so floating-point ties cannot split them.
        """
        if self.variance == 0:
            return self.diff, self.diff
        error = math.sqrt(self.variance)
        statistic = abs(self.diff) / error
        bracket = (0.0, statistic) if significant else (statistic, T_SEARCH_LIMIT)
        critical = student_t_critical(level, self.degrees_of_freedom, *bracket)
        return self.diff - critical * error, self.diff + critical * error


def paired_test(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemar | SeedImageT:
    """The test for a's correctness (images, seeds) minus b's: McNemar with one seed each, else SeedImageT."""
    if a_correct.shape[1] == 1 and b_correct.shape[1] == 1:
        a, b = a_correct[:, 0], b_correct[:, 0]
        return McNemar(int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b)), len(a))
    return SeedImageT.from_correctness(a_correct, b_correct)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statistics 1979), in the order given."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def holm_levels(p_values: list[float], adjusted: list[float], significance: float) -> list[float]:
    """The two-sided level of each pair's interval: it excludes 0 exactly when the adjusted p is below significance.

    Where the step-down reaches a pair, this is Holm's own threshold for it, significance / (pairs left);
    where an earlier pair stopped it, the level shrinks with the ratio p / adjusted p, so the interval holds 0.
    """
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    levels = [0.0] * len(p_values)
    for rank, index in enumerate(order):
        step_level = significance / (len(p_values) - rank)
        levels[index] = significance * p_values[index] / adjusted[index] if adjusted[index] > 0 else step_level
    return levels
