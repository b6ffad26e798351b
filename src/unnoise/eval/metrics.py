"""Sample-quality metrics on feature vectors, in float64.

- Frechet distance between the Gaussians fitted to two feature sets (Dowson & Landau 1982; FID, Heusel
  et al. 2017): |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2. Both square roots are of
  symmetric positive semi-definite matrices, taken by eigendecomposition with negative rounding-error
  eigenvalues clipped to 0, so the result is real and stable even for singular covariances.
- KID: the unbiased estimate of the squared MMD with the kernel k(x, y) = (x.y / d + 1)^3, averaged over
  random subsets, with the standard error over subsets (Binkowski et al. 2018).
- Precision and recall of k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019): the fraction of
  generated samples inside the real manifold (balls to each real point's k-th neighbour), and of real
  samples inside the generated one.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


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


def kid(features_a: Tensor, features_b: Tensor, *, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """(mean, standard error) of the unbiased squared MMD over random subsets (module docstring)."""
    a, b = features_a.reshape(len(features_a), -1).double(), features_b.reshape(len(features_b), -1).double()
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    estimates = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        estimates.append(_mmd2_unbiased(x, y))
    values = torch.tensor(estimates, dtype=torch.float64)
    stderr = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), stderr


def _mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    off = m * (m - 1)
    return float((kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off
                 - 2 * kxy.mean())


def precision_recall(real: Tensor, generated: Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of k-NN manifolds (module docstring)."""
    real, generated = real.reshape(len(real), -1).double(), generated.reshape(len(generated), -1).double()
    return _coverage(real, generated, k), _coverage(generated, real, k)


def _coverage(support: Tensor, queries: Tensor, k: int) -> float:
    """Fraction of queries within some support point's distance to its k-th nearest support neighbour."""
    radii = torch.cdist(support, support).kthvalue(k + 1, dim=1).values  # k+1: the point itself is at 0
    inside = (torch.cdist(queries, support) <= radii[None]).any(dim=1)
    return float(inside.double().mean())
