"""Student's t without scipy: its two-sided tail and critical values, for the paired tests and the verdict.

Each test's interval is found by inverting the test itself (transfer/statistics/paired_tests.py), so every
function here is monotone in the value searched and a bisection finds it to float precision.
"""

import math

BISECTION_STEPS = 200  # halvings of the search bracket: far past float64's 53 bits for any bracket used here
CONTINUED_FRACTION_TERMS = 300  # Lentz's method converges in under 100 terms for the arguments used here
TINY = 1e-300  # keeps Lentz's divisions off zero


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction of Numerical Recipes (3rd ed., section 6.4), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point; use the symmetry
        return 1.0 - regularized_incomplete_beta(1.0 - x, b, a)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > TINY else TINY)
    fraction = d
    for m in range(1, CONTINUED_FRACTION_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > TINY else TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > TINY else TINY
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def student_t_two_sided_p(statistic: float, degrees_of_freedom: float) -> float:
    """P(|T| >= |statistic|) for T ~ Student's t with the given (real, positive) degrees of freedom."""
    nu = degrees_of_freedom
    return regularized_incomplete_beta(nu / (nu + statistic * statistic), nu / 2, 0.5)


def bisect(increasing, target: float, low: float, high: float) -> float:
    """The x in [low, high] where increasing(x) crosses target, to float precision."""
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if increasing(middle) < target else (low, middle)
    return (low + high) / 2


def student_t_critical(two_sided_level: float, degrees_of_freedom: float, low: float, high: float) -> float:
    """The c in [low, high] with P(|T| >= c) = two_sided_level; the caller's bracket settles float ties."""
    return bisect(lambda c: -student_t_two_sided_p(c, degrees_of_freedom), -two_sided_level, low, high)
