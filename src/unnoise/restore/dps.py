"""Diffusion posterior sampling (DPS, Chung et al. 2023) for general, possibly nonlinear, noisy measurements.

After each ancestral step the sample is pulled towards the measurement by the gradient, through the
denoiser, of the residual of its denoised estimate (Alg. 1 and 2, Chung et al. 2023):
    x' <- x' - zeta_i grad_x ||y - A(D(x, sigma))||^2,   zeta_i = zeta / ||y - A(D(x, sigma))||,
per sample. The paper's step acts on the VP chain x_vp = x / sqrt(1 + sigma^2); expressed in sigma it is
multiplied by sqrt((1 + sigma^2)(1 + sigma'^2)), so that a zeta tuned for their models carries over. The
operator is any differentiable callable; its noise needs no parameter (it is absorbed in zeta). An
approximate method: it reduces the measurement error but does not sample p(x0 | y) exactly.

`dps(D, operator, y, sigmas)` is the same correction as a denoiser transform, so any sampler composes with
it: the gradient step on x becomes a correction of the denoised estimate, x0 - zeta_i sigma^2 / (sigma^2 -
sigma'^2) grad (a sigma^2-scaled likelihood score added to D, with the step's added variance sigma^2 -
sigma'^2 in place of the per-step size). An ancestral step (eta = 1) moves x by (1 - sigma'^2 / sigma^2)
times a change of x0, so with the DDPM ancestral sampler on the same grid the transform takes exactly
Alg. 1's steps (up to rounding); `dps_sample` is kept as that paper-faithful reference.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..guide import DenoiserTransform
from ..sample.noise import default_noise
from ..sample.sde import ancestral_step, posterior_std
from .operators import measurement_like


def measurement_gradient(D, operator: Callable[[Tensor], Tensor], y: Tensor, x: Tensor, sigma: float,
                         cond=None) -> tuple[Tensor, Tensor, Tensor]:
    """x0 = D(x, sigma), grad_x ||y - A(x0)||^2 and the residual norms ||y - A(x0)|| (B,), per sample."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0 = D(x, torch.full((x.shape[0],), sigma, dtype=torch.float64, device=x.device), cond)
        ax0 = operator(x0)
        norm = (measurement_like(y, ax0) - ax0).flatten(1).norm(dim=1)  # (B,)
        grad = torch.autograd.grad((norm**2).sum(), x)[0]  # samples are independent: per-sample gradients
    return x0.detach(), grad, norm.detach()


def dps_sample(D, operator: Callable[[Tensor], Tensor], y: Tensor, sigmas: Tensor, x: Tensor, *,
               zeta: float = 1.0, eta: float = 1.0, cond=None, noise=None, callback=None) -> Tensor:
    """DPS from x at sigmas[0] down the grid `sigmas` (ending at 0): DDIM steps with stochasticity eta
    (1: DDPM ancestral, Alg. 1 of Chung et al. 2023), each followed by the measurement step of size zeta."""
    if not zeta >= 0:
        raise UnnoiseError(f"DPS step size zeta must be >= 0, got {zeta}")
    noise = noise or default_noise
    sigmas = sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0, grad, norm = measurement_gradient(D, operator, y, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        x = ancestral_step(x, x0, sigma, sigma_next, eta * posterior_std(sigma, sigma_next), noise)
        vp = math.sqrt((1 + sigma**2) * (1 + sigma_next**2))  # the VP step expressed in sigma (module docstring)
        zeta_i = zeta * vp / norm.clamp(min=1e-12).view(-1, *[1] * (x.ndim - 1))  # Sec. 4.2, Chung et al. 2023
        x = x - zeta_i * grad.to(x.dtype)  # Alg. 1, line 7, Chung et al. 2023
    return x


class PosteriorGuided(DenoiserTransform):
    """The DPS-corrected denoiser returned by `dps` (module docstring); `sigmas` is the sampler's grid,
    whose next level sets each step's size."""

    def __init__(self, D, operator: Callable[[Tensor], Tensor], y: Tensor, sigmas: Tensor, zeta: float = 1.0):
        super().__init__(D)
        self.operator, self.y, self.zeta = operator, y, float(zeta)
        self.levels = [float(s) for s in sigmas.tolist()]

    def next_level(self, sigma: float) -> float:
        """The grid level after `sigma` (an error for a sigma off the grid)."""
        i = min(range(len(self.levels) - 1), key=lambda k: abs(self.levels[k] - sigma))
        if abs(self.levels[i] - sigma) > 1e-9 * max(sigma, 1e-12):
            raise UnnoiseError(f"dps: the sampler evaluated sigma={sigma:g}, which is not on the grid the "
                               "transform was made for (use a sampler that steps along its grid, e.g. ddpm)")
        return self.levels[i + 1]

    def denoised(self, x: Tensor, sigma, cond, inner) -> Tensor:
        sigma_batch = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
        level = float(sigma_batch[0])
        level_next = self.next_level(level)
        x0, grad, norm = measurement_gradient(inner, self.operator, self.y, x, level, cond)
        vp = math.sqrt((1 + level**2) * (1 + level_next**2))  # the VP step expressed in sigma (module docstring)
        zeta_i = self.zeta * vp / norm.clamp(min=1e-12).view(-1, *[1] * (x.ndim - 1))  # Sec. 4.2, Chung et al.
        variance_ratio = level**2 / (level**2 - level_next**2)  # undoes the ancestral step's (1 - s'^2/s^2)
        return x0 - (zeta_i * variance_ratio) * grad.to(x0.dtype)  # Alg. 1, line 7, on the x0 estimate


def dps(D, operator: Callable[[Tensor], Tensor], y: Tensor, sigmas: Tensor, *, zeta: float = 1.0) -> PosteriorGuided:
    """Diffusion posterior sampling (Chung et al. 2023) as a denoiser transform for sampling on `sigmas`."""
    if not zeta >= 0:
        raise UnnoiseError(f"DPS step size zeta must be >= 0, got {zeta}")
    return PosteriorGuided(D, operator, y, sigmas, zeta)
