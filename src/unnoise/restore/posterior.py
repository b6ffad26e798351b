"""Posterior sampling for noiseless linear measurements with the denoiser's own posterior covariance.

For x = x0 + sigma eps, Tweedie's formula gives E[x0 | x] = D(x, sigma) and its second-order form
Cov[x0 | x] = sigma^2 dD/dx (Efron 2011; Boys et al. 2023). Under p(x0 | x) ~= N(D, C) with that C, the
conditional denoiser given y = A x0 is the Gaussian conditional mean
    E[x0 | x, y] = D + C A^T (A C A^T)^-1 (y - A D),
exact when the prior is Gaussian (then p(x0 | x) is Gaussian with exactly that covariance), so a sampler
run with it draws from the exact posterior p(x0 | y). (A C A^T) u = y - A D is solved per sample by
conjugate gradients, each iteration one vector-Jacobian product through the denoiser (dD/dx is
symmetric for an ideal denoiser: it is sigma^2 times the Hessian of log p_sigma plus I).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .operators import LinearOperator


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products, (B, ...) x (B, ...) -> (B, 1, ..., 1)."""
    return (a * b).flatten(1).sum(1).view(-1, *[1] * (a.ndim - 1))


def conjugate_gradients(apply, r: Tensor, iterations: int, tol: float = 1e-10) -> Tensor:
    """Solve M u = r for a symmetric positive-definite M given as `apply`, independently per sample."""
    u, res = torch.zeros_like(r), r.clone()
    p, rr = res.clone(), _dot(res, res)
    scale = rr.clamp(min=1e-300)
    for _ in range(iterations):
        if bool((rr <= tol**2 * scale).all()):
            break
        mp = apply(p)
        alpha = rr / _dot(p, mp).clamp(min=1e-300)
        u, res = u + alpha * p, res - alpha * mp
        rr_next = _dot(res, res)
        p, rr = res + (rr_next / rr.clamp(min=1e-300)) * p, rr_next
    return u


class TweedieConditioned:
    """The denoiser E[x0 | x, A x0 = y] ~= D + C A^T (A C A^T)^-1 (y - A D), C = sigma^2 dD/dx."""

    def __init__(self, denoiser, operator: LinearOperator, y: Tensor, iterations: int = 50):
        self.D, self.operator, self.y, self.iterations = denoiser, operator, y, iterations
        self.process = getattr(denoiser, "process", None)  # as in guide.Guided: samplers may need it

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        op = self.operator
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            x0 = self.D(x, sigma, cond)
            s2 = (torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device) ** 2).reshape(-1, *[1] * (x.ndim - 1))

            def covariance(v: Tensor) -> Tensor:  # C v = sigma^2 (dD/dx)^T v
                return s2 * torch.autograd.grad(x0, x, v, retain_graph=True)[0]

            r = self.y.to(x0.device, x0.dtype) - op(x0.detach())
            u = conjugate_gradients(lambda w: op(covariance(op.adjoint(w))), r, self.iterations)
            return (x0 + covariance(op.adjoint(u))).detach()



def tweedie_conditioned(denoiser, operator: LinearOperator, y: Tensor, iterations: int = 50) -> TweedieConditioned:
    """The denoiser transform conditioning on A x0 = y through the denoiser's posterior covariance."""
    return TweedieConditioned(denoiser, operator, y, iterations)


def posterior_summary(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel mean and standard deviation over K samples (K, ...) -> two (...) tensors."""
    return samples.mean(0), samples.std(0, unbiased=samples.shape[0] > 1)
