"""Gaussian mixtures with closed-form noisy marginals: the exact denoiser, score and log-density.

Data x0 ~ sum_k w_k N(mu_k, S_k). At noise level sigma the marginal of x = x0 + sigma eps is
sum_k w_k N(mu_k, S_k + sigma^2 I), and the ideal denoiser is the posterior mean
  D(x, sigma) = sum_k r_k(x) [mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k)],
with responsibilities r_k(x) proportional to w_k N(x; mu_k, S_k + sigma^2 I). Computed through the
eigendecomposition S_k = U_k diag(lambda_k) U_k^T, in float64. Used by tests and benchmarks as ground truth.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


class GaussianMixture:
    """A mixture of K full-covariance Gaussians in d dimensions; callable as a denoiser D(x, sigma, cond)."""

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None):
        self.means = torch.as_tensor(means, dtype=torch.float64)  # (K, d)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)  # (K, d, d)
        k = self.means.shape[0]
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs)  # (K, d), (K, d, d)
        self.eigvals = self.eigvals.clamp(min=0)
        self.calls = 0  # number of batched denoiser evaluations (NFE)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _project(self, x: Tensor, sigma: Tensor):
        """Per-component coordinates y = U^T (x - mu) and variances lambda + sigma^2: (B, K, d) each."""
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        y = torch.einsum("kde,bkd->bke", self.eigvecs, x[:, None, :] - self.means[None])
        var = self.eigvals[None] + sigma.to(torch.float64).reshape(-1, 1, 1) ** 2
        return y, var

    def _log_responsibilities(self, y: Tensor, var: Tensor) -> Tensor:
        log_normal = -0.5 * ((y**2 / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        return log_normal + self.weights.log()[None]  # (B, K), unnormalised

    def log_density(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_sigma(x) of the noisy marginal (sigma = 0: the data density). Shape (B,)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        y, var = self._project(x, sigma)
        return torch.logsumexp(self._log_responsibilities(y, var), dim=1)

    def posterior_mean(self, x: Tensor, sigma: Tensor) -> Tensor:
        """E[x0 | x] at per-sample levels sigma (B,), in float64 with x's shape."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        y, var = self._project(x, sigma)
        r = torch.softmax(self._log_responsibilities(y, var), dim=1)  # (B, K)
        shrunk = self.eigvals[None] / var * y  # S (S + sigma^2 I)^-1 (x - mu) in eigen-coordinates
        mean_k = self.means[None] + torch.einsum("kde,bke->bkd", self.eigvecs, shrunk)
        return torch.einsum("bk,bkd->bd", r, mean_k).reshape(x.shape)

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        self.calls += 1
        return self.posterior_mean(x, sigma).to(x.dtype)

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        return (self.posterior_mean(x, sigma) - x.to(torch.float64)) / sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Total covariance sum_k w_k (S_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = torch.einsum("k,kde->de", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n draws (n, d) and their component labels (n,)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        scale = self.eigvecs * self.eigvals.sqrt()[:, None, :]  # U diag(sqrt(lambda))
        return self.means[labels] + torch.einsum("nde,ne->nd", scale[labels], z), labels


def ring(n_modes: int = 8, radius: float = 1.5, std: float = 0.03) -> GaussianMixture:
    """n isotropic 2-D modes evenly spaced on a circle."""
    angle = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    covs = (std**2) * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2).clone()
    return GaussianMixture(means, covs)


def random_mixture(dim: int, n_components: int, seed: int = 0, decay: float = 1.0,
                   scale: float = 1.0) -> GaussianMixture:
    """Components with random means and rotations and a power-law spectrum lambda_i ~ i^-decay."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_components, dim, generator=g, dtype=torch.float64) * scale
    spectrum = 0.25 * torch.arange(1, dim + 1, dtype=torch.float64) ** (-decay)
    q, _ = torch.linalg.qr(torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64))
    covs = q @ torch.diag_embed(spectrum.expand(n_components, dim)) @ q.transpose(1, 2)
    weights = torch.rand(n_components, generator=g, dtype=torch.float64) + 0.5
    return GaussianMixture(means, covs, weights)


def reference_ode_solution(D, x: Tensor, sigma_start: float, sigma_end: float, steps: int = 2000) -> Tensor:
    """Classic RK4 on dx/du = x - D(x, e^u), u = log sigma (the probability-flow ODE, Eq. 4 of Karras et
    al. 2022, in log-sigma time), from sigma_start down to sigma_end > 0. Returns float64."""
    x = x.to(torch.float64)
    u = torch.linspace(math.log(sigma_start), math.log(sigma_end), steps + 1, dtype=torch.float64).tolist()

    def f(state: Tensor, ui: float) -> Tensor:
        sigma = torch.full((state.shape[0],), math.exp(ui), dtype=torch.float64)
        return state - D(state, sigma).to(torch.float64)

    for u0, u1 in zip(u[:-1], u[1:]):
        h = u1 - u0
        k1 = f(x, u0)
        k2 = f(x + 0.5 * h * k1, u0 + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, u0 + 0.5 * h)
        k4 = f(x + h * k3, u1)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


class LabelledMixture:
    """Exact class-conditional denoiser: class k is component k of `mixture`, and the null label
    (`null_class` = K) is the whole mixture, as a network trained with condition dropout learns it.
    Callable as D(x, sigma, cond) with cond (B,) labels or None (unconditional)."""

    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture
        self.null_class = len(mixture.weights)
        self.calls = 0
        self.components = [GaussianMixture(mixture.means[k:k + 1], mixture.covs[k:k + 1])
                           for k in range(self.null_class)]

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        out = self.mixture.posterior_mean(x, sigma)
        if cond is not None:
            for k, component in enumerate(self.components):
                rows = cond == k
                if rows.any():
                    out[rows] = component.posterior_mean(x[rows], sigma[rows])
        return out.to(x.dtype)
