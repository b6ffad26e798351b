"""Posterior sampling for linear measurements with the denoiser's own posterior covariance.

For x = x0 + sigma eps, Tweedie's formula gives E[x0 | x] = D(x, sigma) and its second-order form
Cov[x0 | x] = sigma^2 dD/dx (Efron 2011; Boys et al. 2023). Under p(x0 | x) ~= N(D, C) with that C, the
conditional denoiser given y = A x0 + sigma_y n is the Gaussian conditional mean
    E[x0 | x, y] = D + C A^T (A C A^T + sigma_y^2 I)^-1 (y - A D).
When the prior is Gaussian, p(x0 | x) is Gaussian with exactly that covariance, so this is the exact
denoiser of the posterior p(x0 | y), and a sampler run with it samples p(x0 | y) as exactly as it samples
any data distribution from its exact denoiser: exact in the limit of small steps (the probability-flow
ODE solvers converge at their order; an ancestral step misses the (1 - sigma'^2/sigma^2)^2 C part of the
exact transition variance, a first-order bias). For other priors it is the Gaussian approximation of
p(x0 | x) (Boys et al. 2023). The linear system is solved per sample by conjugate gradients, each
iteration one vector-Jacobian product through the denoiser (dD/dx is symmetric for an ideal denoiser:
it is I plus sigma^2 times the Hessian of log p_sigma).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..guide import DenoiserTransform
from .cg import conjugate_gradients
from .operators import LinearOperator, measurement_like


class TweedieConditioned(DenoiserTransform):
    """The denoiser E[x0 | x, y] ~= D + C A^T (A C A^T + sigma_y^2 I)^-1 (y - A D), C = sigma^2 dD/dx."""

    def __init__(self, denoiser, operator: LinearOperator, y: Tensor, iterations: int = 50):
        super().__init__(denoiser)
        self.operator, self.y, self.iterations = operator, y, iterations

    def denoised(self, x: Tensor, sigma: Tensor, cond, inner) -> Tensor:
        op, noise_var = self.operator, self.operator.noise_std**2
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            x0 = inner(x, sigma, cond)
            s2 = (torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device) ** 2).reshape(-1, *[1] * (x.ndim - 1))

            def covariance(v: Tensor) -> Tensor:  # C v = sigma^2 (dD/dx)^T v
                return s2 * torch.autograd.grad(x0, x, v, retain_graph=True)[0]

            ax0 = op(x0.detach())
            r = measurement_like(self.y, ax0) - ax0
            u = conjugate_gradients(lambda w: op(covariance(op.adjoint(w))) + noise_var * w, r, self.iterations)
            return (x0 + covariance(op.adjoint(u))).detach()


def tweedie_conditioned(denoiser, operator: LinearOperator, y: Tensor, iterations: int = 50) -> TweedieConditioned:
    """The denoiser transform conditioning on y = A x0 (+ operator.noise_std n) through the denoiser's
    posterior covariance; exact for a Gaussian prior."""
    return TweedieConditioned(denoiser, operator, y, iterations)


def posterior_summary(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel mean and standard deviation over K samples (K, ...) -> two (...) tensors."""
    return samples.mean(0), samples.std(0, unbiased=samples.shape[0] > 1)
