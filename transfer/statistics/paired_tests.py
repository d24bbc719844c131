"""The paired test of strategy a minus strategy b on the same test images, with the interval that inverts it.

It answers "is a's accuracy different from b's?" with a two-sided p-value, and gives, at any two-sided level,
the interval of differences the test would not reject: the interval at level g excludes 0 exactly when p < g,
so a decision and its interval never disagree.

Every pair of a run uses one model (transfer/statistics/run_variance.py): the difference of mean accuracies over
seeds and images, with a variance that adds seed-to-seed variance (pooled over the run's strategies) to that of
the test images drawn, referred to Student's t with Welch-Satterthwaite degrees of freedom. When no strategy
of the run has two seeds there is no seed part: the test is the unconditional paired Wald test of the two
trained networks, variance ((n10 + n01) / N - d^2) / N (times N / (N - 1)), never below (1 / N)^2.
"""

import math
from dataclasses import dataclass

from transfer.statistics.distributions import student_t_critical, student_t_two_sided_p
from transfer.statistics.run_variance import RunVariance

NETWORKS_T, SEED_IMAGE_T = "paired_images_t", "seed_and_image_t"
T_SEARCH_LIMIT = 1e6  # |t| beyond any critical value a level above 1e-300 needs


@dataclass(frozen=True)
class PairedT:
    """a minus b: the difference, its variance (always above 0) and Satterthwaite's degrees of freedom."""

    diff: float
    variance: float
    degrees_of_freedom: float
    name: str  # NETWORKS_T (no seed spread in the run) or SEED_IMAGE_T

    def p_value(self) -> float:
        """Two-sided p of diff = 0 under Student's t."""
        return student_t_two_sided_p(self.diff / math.sqrt(self.variance), self.degrees_of_freedom)

    def interval(self, level: float, significant: bool) -> tuple[float, float]:
        """diff ± t critical x standard error at two-sided level; it excludes 0 iff significant.

        The critical value lies below |t| exactly when p < level: the bisection searches the side the
        decision names, so floating-point ties cannot split them.
        """
        error = math.sqrt(self.variance)
        statistic = abs(self.diff) / error
        bracket = (0.0, statistic) if significant else (statistic, T_SEARCH_LIMIT)
        critical = student_t_critical(level, self.degrees_of_freedom, *bracket)
        return self.diff - critical * error, self.diff + critical * error


def paired_test(run: RunVariance, a: int, b: int) -> PairedT:
    """The test of strategy number a minus strategy number b of a run."""
    pair = run.pair(a, b)
    return PairedT(pair.diff, pair.variance, pair.degrees_of_freedom, SEED_IMAGE_T if run.seed_df else NETWORKS_T)


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
