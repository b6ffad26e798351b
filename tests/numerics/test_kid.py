"""KID: the MMD^2 U-statistic against explicit loops, its variance estimate against exact enumeration over a
discrete distribution, and the printed standard error against the spread of independent repeats."""
import itertools
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.eval.metrics import kid


def kernel(u, v):
    return (float(u @ v) / len(u) + 1) ** 3


def mmd2_by_loops(x, y):
    """The unbiased MMD^2 of Gretton et al. 2012 (eq. 3) written as its definition: explicit double loops."""
    m, n = len(x), len(y)
    within_x = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_y = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    cross = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_x + within_y - 2 * cross


def test_estimate_equals_explicit_loops():
    g = torch.Generator().manual_seed(0)
    for m, n, d in ((4, 4, 1), (5, 7, 3), (9, 6, 5)):
        x = torch.randn(m, d, generator=g, dtype=torch.float64)
        y = 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) + 0.3
        expected = mmd2_by_loops(x, y)
        estimate, _ = kid(x, y)
        both = torch.cat([x, y])
        scale = max(abs(kernel(u, v)) for u in both for v in both)  # the largest kernel term
        assert abs(estimate - expected) <= 64 * torch.finfo(torch.float64).eps * scale


def test_variance_estimate_is_unbiased_by_exact_enumeration():
    """Every draw of m = 4 points from a 3-point distribution and n = 5 from a 2-point one, with its
    probability: E[estimate] is the population MMD^2, and E[variance estimate] = Var(estimate) exactly."""
    points_x, p_x = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64), [0.2, 0.5, 0.3]
    points_y, p_y = torch.tensor([[0.0], [1.5]], dtype=torch.float64), [0.6, 0.4]
    m, n = 4, 5
    mean = second = mean_variance = 0.0
    for ix in itertools.product(range(3), repeat=m):
        for iy in itertools.product(range(2), repeat=n):
            weight = math.prod(p_x[i] for i in ix) * math.prod(p_y[i] for i in iy)
            estimate, variance_estimate = _estimate_and_raw_variance(points_x[list(ix)], points_y[list(iy)])
            mean += weight * estimate
            second += weight * estimate**2
            mean_variance += weight * variance_estimate

    def expectation(points_a, p_a, points_b, p_b):  # E k(a, b) for independent a ~ p_a, b ~ p_b
        return sum(pa * pb * kernel(a, b) for a, pa in zip(points_a, p_a) for b, pb in zip(points_b, p_b))

    population = (expectation(points_x, p_x, points_x, p_x) + expectation(points_y, p_y, points_y, p_y)
                  - 2 * expectation(points_x, p_x, points_y, p_y))
    variance = second - mean**2
    assert abs(mean - population) <= 1e-12 * (1 + abs(population))
    assert variance > 0.1 and abs(mean_variance - variance) <= 1e-10 * variance


def _estimate_and_raw_variance(x, y):
    """kid's estimate and its variance estimate before the clamp at 0 (negative ones count in the mean)."""
    from unnoise.eval import metrics

    r_x, frob_x = metrics._within_sums(x)
    r_y, frob_y = metrics._within_sums(y)
    s, t, frob_xy = metrics._cross_sums(x, y)
    moments = metrics._KernelMoments(len(x), len(y), r_x, frob_x, r_y, frob_y, s, t, frob_xy)
    return moments.mmd2(), moments.mmd2_variance()


@pytest.mark.parametrize("shift", [0.0, 0.15])
def test_standard_error_matches_spread_of_independent_repeats(shift):
    """200 independent draws of two sets (equal distributions, and shifted ones): the mean printed standard
    error matches the empirical standard deviation of the estimates within 20%; the estimates average to 0
    within their standard error for equal distributions, and well above it for shifted ones."""
    g = torch.Generator().manual_seed(5)
    draws = [kid(torch.randn(120, 16, generator=g, dtype=torch.float64),
                 torch.randn(100, 16, generator=g, dtype=torch.float64) + shift) for _ in range(200)]
    estimates = torch.tensor([e for e, _ in draws], dtype=torch.float64)
    printed = torch.tensor([se for _, se in draws], dtype=torch.float64)
    spread = float(estimates.std())
    assert abs(float(printed.mean()) / spread - 1) < 0.2, (float(printed.mean()), spread)
    if shift == 0.0:
        assert abs(float(estimates.mean())) < 3 * spread / math.sqrt(len(estimates))
    else:
        assert float(estimates.mean()) > 10 * spread / math.sqrt(len(estimates))


def test_too_few_samples_is_a_one_line_error():
    with pytest.raises(UnnoiseError, match="at least 4 samples"):
        kid(torch.randn(3, 2), torch.randn(10, 2))
