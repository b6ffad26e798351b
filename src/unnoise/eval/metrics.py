"""Sample-quality metrics on feature vectors, in float64.

- Frechet distance between the Gaussians fitted to two feature sets (Dowson & Landau 1982; FID, Heusel
  et al. 2017): |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2. Both square roots are of
  symmetric positive semi-definite matrices, taken by eigendecomposition with negative rounding-error
  eigenvalues clipped to 0, so the result is real and stable even for singular covariances.
- KID (Binkowski et al. 2018): the squared MMD with the kernel k(x, y) = (x.y / d + 1)^3, estimated by the
  unbiased U-statistic over all samples (Gretton et al. 2012, eq. 3), with the standard error from an
  unbiased estimate of that U-statistic's exact variance (derived at `_KernelMoments.mmd2_variance`).
  Kernel matrices are computed CHUNK rows at a time, so memory stays O(CHUNK (m + n)).
- Precision and recall of k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019): the fraction of
  generated samples inside the real manifold (balls to each real point's k-th neighbour), and of real
  samples inside the generated one.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UnnoiseError

CHUNK = 1024


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = features.reshape(len(features), -1).double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (module docstring)."""
    mu1, mu2, cov1, cov2 = mu1.double(), mu2.double(), cov1.double(), cov2.double()
    root1 = _psd_sqrt(cov1)
    cross = _psd_sqrt(root1 @ cov2 @ root1)
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross.trace())


def fd(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def kid(features_a: Tensor, features_b: Tensor) -> tuple[float, float]:
    """(estimate, standard error) of the squared MMD between two feature sets (module docstring).

    The estimate is the unbiased U-statistic over all samples; the standard error is the square root of
    the unbiased estimate of that statistic's variance (0 if the estimate comes out negative)."""
    x, y = features_a.reshape(len(features_a), -1).double(), features_b.reshape(len(features_b), -1).double()
    if min(len(x), len(y)) < 4:
        raise UnnoiseError(f"KID needs at least 4 samples per set, got {len(x)} and {len(y)}")
    r_x, frob_x = _within_sums(x)
    r_y, frob_y = _within_sums(y)
    s, t, frob_xy = _cross_sums(x, y)
    m, n = len(x), len(y)
    moments = _KernelMoments(m, n, r_x, frob_x, r_y, frob_y, s, t, frob_xy)
    return moments.mmd2(), math.sqrt(max(moments.mmd2_variance(), 0.0))


def _kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x, y) - 1 for the KID kernel k = (x.y/d + 1)^3, as u (3 + u (3 + u)) with u = x.y/d.

    Dropping the constant changes neither the MMD nor its variance (each adds k once with weight
    1 + 1 - 2 = 0) and removes most of the cancellation between the three kernel means."""
    u = x @ y.T / x.shape[1]
    return u * (3 + u * (3 + u))


def _within_sums(x: Tensor) -> tuple[Tensor, float]:
    """Row sums and sum of squares of the kernel matrix of x with its diagonal (i = j) left out."""
    rows, frob = torch.empty(len(x), dtype=x.dtype), 0.0
    for start in range(0, len(x), CHUNK):
        block = _kernel(x[start:start + CHUNK], x)
        block[torch.arange(len(block)), torch.arange(start, start + len(block))] = 0
        rows[start:start + len(block)] = block.sum(1)
        frob += float(block.pow(2).sum())
    return rows, frob


def _cross_sums(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, float]:
    """Row sums, column sums and sum of squares of the kernel matrix between x and y."""
    rows, cols, frob = torch.empty(len(x), dtype=x.dtype), torch.zeros(len(y), dtype=x.dtype), 0.0
    for start in range(0, len(x), CHUNK):
        block = _kernel(x[start:start + CHUNK], y)
        rows[start:start + len(block)] = block.sum(1)
        cols += block.sum(0)
        frob += float(block.pow(2).sum())
    return rows, cols, frob


class _KernelMoments:
    """Unbiased estimates of kernel means and products over distinct samples, from the kernel matrices'
    row sums r, column sums and sums of squares F, and the MMD^2 U-statistic and its variance built from them.

    Notation: x_1.. are distinct samples of the first set, y_1.. of the second; k_x = k(x_1, x_2),
    k_y = k(y_1, y_2), k_xy = k(x_1, y_1). Sums over distinct index tuples by inclusion-exclusion, e.g.
    sum_{i,j,l,p distinct} K_ij K_lp = (sum K)^2 - 4 |r|^2 + 2 F for a zero-diagonal symmetric K."""

    def __init__(self, m, n, r_x, frob_x, r_y, frob_y, s, t, frob_xy):
        self.m, self.n = m, n
        sum_x, sum_y, sum_xy = float(r_x.sum()), float(r_y.sum()), float(s.sum())
        rr_x, rr_y, ss, tt = float(r_x @ r_x), float(r_y @ r_y), float(s @ s), float(t @ t)
        self.mean_x, self.mean_y, self.mean_xy = sum_x / (m * (m - 1)), sum_y / (n * (n - 1)), sum_xy / (m * n)
        # E[k(x1,x2) k(x3,x4)] = (E k_x)^2, E[k(x1,x2) k(x1,x3)], E[k(x1,x2)^2]; the same for y
        self.x_sq_mean = (sum_x**2 - 4 * rr_x + 2 * frob_x) / (m * (m - 1) * (m - 2) * (m - 3))
        self.x_shared_one = (rr_x - frob_x) / (m * (m - 1) * (m - 2))
        self.x_shared_two = frob_x / (m * (m - 1))
        self.y_sq_mean = (sum_y**2 - 4 * rr_y + 2 * frob_y) / (n * (n - 1) * (n - 2) * (n - 3))
        self.y_shared_one = (rr_y - frob_y) / (n * (n - 1) * (n - 2))
        self.y_shared_two = frob_y / (n * (n - 1))
        # (E k_xy)^2, E[k(x1,y1) k(x1,y2)], E[k(x1,y1) k(x2,y1)], E[k(x1,y1)^2]
        self.xy_sq_mean = (sum_xy**2 - ss - tt + frob_xy) / (m * (m - 1) * n * (n - 1))
        self.xy_shared_x = (ss - frob_xy) / (m * n * (n - 1))
        self.xy_shared_y = (tt - frob_xy) / (m * (m - 1) * n)
        self.xy_shared_two = frob_xy / (m * n)
        # E k_x E k_xy, E[k(x1,x2) k(x1,y1)]; the same with y
        r_x_s, r_y_t = float(r_x @ s), float(r_y @ t)
        self.x_xy_mean = (sum_x * sum_xy - 2 * r_x_s) / (m * (m - 1) * (m - 2) * n)
        self.x_xy_shared = r_x_s / (m * (m - 1) * n)
        self.y_xy_mean = (sum_y * sum_xy - 2 * r_y_t) / (n * (n - 1) * (n - 2) * m)
        self.y_xy_shared = r_y_t / (n * (n - 1) * m)

    def mmd2(self) -> float:
        """MMD^2_u = mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)."""
        return self.mean_x + self.mean_y - 2 * self.mean_xy

    def mmd2_variance(self) -> float:
        """Unbiased estimate of Var(MMD^2_u), from its exact variance (Hoeffding 1948 for each U-statistic):

        Var = [4(m-2) z1x + 2 z2x] / (m(m-1)) + [4(n-2) z1y + 2 z2y] / (n(n-1))
              + 4 [z11 + (n-1) z10 + (m-1) z01] / (mn) - 8 c_x / m - 8 c_y / n,
        z1x = Cov(k(x1,x2), k(x1,x3)), z2x = Var k(x1,x2), z10 = Cov(k(x1,y1), k(x1,y2)),
        z01 = Cov(k(x1,y1), k(x2,y1)), z11 = Var k(x1,y1), c_x = Cov(k(x1,x2), k(x1,y1)) (and y alike).
        Every term is linear in the moments, so plugging in their unbiased estimates keeps it unbiased;
        the first-order terms cancel when both sets come from one distribution, where the variance is
        O(1/m^2) and overlapping-subset schemes misjudge it."""
        m, n = self.m, self.n
        z1x, z2x = self.x_shared_one - self.x_sq_mean, self.x_shared_two - self.x_sq_mean
        z1y, z2y = self.y_shared_one - self.y_sq_mean, self.y_shared_two - self.y_sq_mean
        z10, z01 = self.xy_shared_x - self.xy_sq_mean, self.xy_shared_y - self.xy_sq_mean
        z11 = self.xy_shared_two - self.xy_sq_mean
        c_x, c_y = self.x_xy_shared - self.x_xy_mean, self.y_xy_shared - self.y_xy_mean
        return ((4 * (m - 2) * z1x + 2 * z2x) / (m * (m - 1)) + (4 * (n - 2) * z1y + 2 * z2y) / (n * (n - 1))
                + 4 * (z11 + (n - 1) * z10 + (m - 1) * z01) / (m * n) - 8 * c_x / m - 8 * c_y / n)


def precision_recall(real: Tensor, generated: Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of k-NN manifolds (module docstring)."""
    real, generated = real.reshape(len(real), -1).double(), generated.reshape(len(generated), -1).double()
    return _coverage(real, generated, k), _coverage(generated, real, k)


def _coverage(support: Tensor, queries: Tensor, k: int) -> float:
    """Fraction of queries within some support point's distance to its k-th nearest support neighbour."""
    radii = torch.cdist(support, support).kthvalue(k + 1, dim=1).values  # k+1: the point itself is at 0
    inside = (torch.cdist(queries, support) <= radii[None]).any(dim=1)
    return float(inside.double().mean())
