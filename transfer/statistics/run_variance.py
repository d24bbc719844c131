"""How much a difference in accuracy between two strategies of one run can move by chance: one model for every pair.

A strategy's accuracy on the test images comes from two draws: which networks training produced (its seeds)
and which test images were drawn. For strategies a and b, with n_a and n_b seeds on the same N images:

    var(mean_a - mean_b) = s2_seed (1/n_a + 1/n_b) + image_part / N

- s2_seed is the seed-to-seed variance of one seed's accuracy, pooled over every strategy of the run that has
  two seeds or more (Sum (n - 1) s2 / Sum (n - 1): with 3 seeds each, 5 strategies give 10 degrees of freedom
  where one strategy gives 2). Strategies are assumed to spread alike; a one-seed strategy borrows the pool.
  Floor: the residual (image x seed) mean square / N, the spread seeds would show if training runs differed
  only image by image, so a run whose seeds happen to agree never gets a p-value of exactly 0.
- image_part is the variance over images of the per-image difference of mean correctness, less the image x
  seed interaction each side's seed mean carries (already counted in s2_seed), as in a two-way crossed
  random-effects analysis of variance (Searle, Casella and McCulloch, "Variance Components", 1992, ch. 4).
  With one seed on both sides this is the unconditional paired (Wald) variance ((n10 + n01)/N - d^2) / N
  of the two trained networks, times N / (N - 1).
- The total is never below (1 / N)^2, one image's share squared: no interval has zero width.

The statistic is referred to Student's t with Welch-Satterthwaite degrees of freedom from the pooled seed
variance's and the images' (Welch, Biometrika 1947; Satterthwaite, Biometrics 1946). Without any strategy of
two seeds there is no seed part: the comparison is of the trained networks, with N - 1 degrees of freedom.
"""

from dataclasses import dataclass

import numpy as np


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
class PairDifference:
    """a minus b: the difference of mean accuracies, its variance and the degrees of freedom of that variance."""

    diff: float
    variance: float
    degrees_of_freedom: float


@dataclass(frozen=True)
class RunVariance:
    """What every pair's variance needs, from each strategy's correctness (images, seeds) on the same images."""

    names: tuple[str, ...]
    images: int
    seeds: tuple[int, ...]  # each strategy's number of seeds
    means: tuple[float, ...]  # each strategy's accuracy, mean over its seeds and the images
    seed_variance: float  # pooled and floored; 0 when no strategy has two seeds
    seed_df: int  # Sum (n - 1) over the strategies: 0 when every strategy has one seed
    interaction: tuple[float, ...]  # each strategy's image x seed mean square; the pooled one where it has one seed
    image_covariance: np.ndarray  # (k, k): covariance over images of the strategies' per-image mean correctness

    @classmethod
    def from_correctness(cls, correct: dict[str, np.ndarray]) -> "RunVariance":
        """From name -> correctness (images, seeds), bool, every array on the same images in the same order."""
        names = tuple(correct)
        arrays = [np.asarray(correct[name], dtype=bool) for name in names]
        images = len(arrays[0])
        seeds = tuple(array.shape[1] for array in arrays)
        seed_accuracies = [array.sum(axis=0, dtype=np.int64) / images for array in arrays]
        seed_df = sum(n - 1 for n in seeds)
        interactions = [interaction_mean_square(array) for array in arrays]
        pooled_interaction = 0.0
        seed_variance = 0.0
        if seed_df:
            pooled_interaction = sum((n - 1) * value for n, value in zip(seeds, interactions, strict=True)) / seed_df
            spread = sum(float(np.var(acc, ddof=1)) * (len(acc) - 1) for acc in seed_accuracies if len(acc) > 1)
            seed_variance = max(spread / seed_df, pooled_interaction / images)
        per_image = np.stack([array.sum(axis=1, dtype=np.int64) / array.shape[1] for array in arrays], axis=1)
        covariance = np.atleast_2d(np.cov(per_image, rowvar=False, ddof=1)) if images > 1 else np.zeros((1, 1))
        return cls(
            names,
            images,
            seeds,
            tuple(float(acc.mean()) for acc in seed_accuracies),
            seed_variance,
            seed_df,
            tuple(value if n > 1 else pooled_interaction for n, value in zip(seeds, interactions, strict=True)),
            covariance,
        )

    @property
    def claims_for(self) -> str:
        """'recipes' when every strategy has two seeds or more (its seed spread is measured), else 'networks'."""
        return "recipes" if min(self.seeds) >= 2 else "networks"

    def image_part(self, a: int, b: int) -> float:
        """The image-sampling variance of a's mean minus b's, N times over: per-image variance less interaction."""
        cov = self.image_covariance
        per_image = cov[a, a] + cov[b, b] - 2 * cov[a, b]
        return max(float(per_image) - self.interaction[a] / self.seeds[a] - self.interaction[b] / self.seeds[b], 0.0)

    def pair(self, a: int, b: int) -> PairDifference:
        """Strategy number a minus strategy number b."""
        seed_part = self.seed_variance * (1 / self.seeds[a] + 1 / self.seeds[b])
        image_part = self.image_part(a, b) / self.images
        return PairDifference(
            self.means[a] - self.means[b],
            max(seed_part + image_part, 1 / self.images**2),
            satterthwaite(seed_part, self.seed_df, image_part, self.images - 1),
        )


def satterthwaite(seed_part: float, seed_df: int, image_part: float, image_df: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of two independent variance estimates."""
    denominator = (seed_part**2 / seed_df if seed_df else 0.0) + image_part**2 / max(image_df, 1)
    if denominator == 0:
        return float(max(image_df, 1)) if not seed_df else float(seed_df)
    return (seed_part + image_part) ** 2 / denominator
