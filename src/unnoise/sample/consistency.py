"""Consistency models (Song et al. 2023): the parameterization that makes f(x, sigma_min) = x hold
exactly, the nested grid few-step students sample on, and the (multistep) consistency sampler.

A consistency function f(x, sigma) maps any point of a probability-flow trajectory to the trajectory's
end. It fits the denoiser contract (it returns an x0 estimate), so it is sampled like any denoiser:
    one step:   x0 = f(sigma_max z, sigma_max)
    multistep:  x <- x0 + sqrt(sigma_i^2 - sigma_min^2) z,  x0 <- f(x, sigma_i)      (Alg. 1, Song et al. 2023)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..param import Denoiser
from .noise import default_noise
from .ode import denoise

CONSISTENCY_METHODS = ("consistency", "consistency-training")  # model.distill.method of a consistency student


def nested_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """n steps: sigma_i = (sigma_max^(1/rho) + (i/n) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for
    i < n, then 0 (Eq. 5 of Karras et al. 2022 at u = i/n). Every other point of the 2n-step grid is the
    n-step grid, so a progressive-distillation student's steps are exactly pairs of its teacher's; its
    last point above 0 stays above sigma_min (a consistency model's multistep levels)."""
    if not isinstance(n, int) or n < 1:
        from ..errors import UnnoiseError

        raise UnnoiseError(f"steps must be an integer >= 1, got {n!r}")
    u = torch.arange(n + 1, dtype=torch.float64) / n
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + u * (inv_min - inv_max)) ** rho
    sigmas[0] = sigma_max  # exactly, not a rounded power
    sigmas[n] = 0.0
    return sigmas


def consistency_scalings(sigma: Tensor, sigma_min: float, sigma_data: float) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) of Song et al. 2023 (Appendix C), float64:
        c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
        c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2)
    so that c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly."""
    sigma = sigma.to(torch.float64)
    sd2 = sigma_data**2
    c_skip = sd2 / ((sigma - sigma_min) ** 2 + sd2)
    c_out = sigma_data * (sigma - sigma_min) / (sd2 + sigma**2).sqrt()
    return c_skip, c_out


class ConsistencyDenoiser(Denoiser):
    """f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(x, sigma) with the consistency scalings, where F is
    the EDM-equivalent output of the wrapped parameterization, F = (D(x, sigma) - c_skip_edm x) / c_out_edm
    (for an `edm` network exactly its raw output). Since c_out / c_out_edm = (sigma - sigma_min) / sigma,
        f = (c_skip - r c_skip_edm) x + r D(x, sigma),   r = (sigma - sigma_min) / sigma,
    which is x itself at sigma = sigma_min (c_skip = 1, r = 0 exactly), for any network output."""

    def __init__(self, net, process, prediction: str = "edm", sigma_data: float = 0.5, *, sigma_min: float):
        super().__init__(net, process, prediction, sigma_data, learned_variance=False)
        self.sigma_min = float(sigma_min)

    def denoise_with_variance(self, x: Tensor, sigma: Tensor, cond=None) -> tuple[Tensor, None]:
        inner, _ = super().denoise_with_variance(x, sigma, cond)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float64)
        sigma = sigma.expand(x.shape[0]) if sigma.dim() == 0 else sigma
        c_skip, _ = consistency_scalings(sigma, self.sigma_min, self.sigma_data)
        ratio = (sigma - self.sigma_min) / sigma
        c_skip_edm = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        return _per_sample(c_skip - ratio * c_skip_edm, x) * x + _per_sample(ratio, x) * inner, None


def _per_sample(c: Tensor, like: Tensor) -> Tensor:
    """(B,) coefficients shaped to broadcast against `like` (B, ...), in its dtype."""
    return c.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def consistency_sample(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None) -> Tensor:
    """Multistep consistency sampling (Alg. 1, Song et al. 2023) on a decreasing grid ending at 0: at each
    level, x0 = f(x, sigma_i); then re-noise to the next level, x = x0 + sqrt(sigma'^2 - sigma_min^2) z
    (sigma_min: the denoiser's process's). One model call per level; one level is one-step generation."""
    noise = noise or default_noise
    process = getattr(D, "process", None)
    sigma_min = float(getattr(D, "sigma_min", getattr(process, "sigma_min", 0.0)))
    levels = sigmas.tolist()
    x0 = x
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        if sigma_next == 0:
            return x0
        x = x0 + math.sqrt(max(sigma_next**2 - sigma_min**2, 0.0)) * noise(x0)
    return x0
