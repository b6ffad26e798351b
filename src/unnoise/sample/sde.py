"""Stochastic samplers: DDIM with eta (Song et al. 2021) and DDPM ancestral sampling (Ho et al. 2020).

In VE coordinates the DDPM posterior q(x_{t-1} | x_t, x0) is the Gaussian bridge between levels
sigma > sigma' (the chain adds variance sigma^2 - sigma'^2 between them):
  mean = x0 + (sigma'^2 / sigma^2) (x - x0),   variance = sigma'^2 (sigma^2 - sigma'^2) / sigma^2.
DDIM (Eq. 12, Song et al. 2021), divided by sqrt(alpha_bar_{t-1}), is
  x' = x0 + sqrt(sigma'^2 - c^2) eps_hat + c z,  c^2 = eta^2 * posterior variance,
so eta = 1 is exactly the ancestral DDPM step and eta = 0 the Euler step of the probability-flow ODE.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import default_noise
from .ode import denoise


def _ancestral(D, x: Tensor, sigmas: Tensor, *, cond, noise, callback, noise_std) -> Tensor:
    """Steps x' = x0 + sqrt(sigma'^2 - c^2) eps_hat + c z with c = noise_std(sigma, sigma'): a
    deterministic move to level sqrt(sigma'^2 - c^2) along eps_hat = (x - x0) / sigma, then fresh noise."""
    noise = noise or default_noise
    sigmas = sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        x = ancestral_step(x, x0, sigma, sigma_next, noise_std(sigma, sigma_next) if sigma_next > 0 else 0.0, noise)
    return x


def ancestral_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float, c: float, noise) -> Tensor:
    """x' = x0 + sqrt(sigma'^2 - c^2) (x - x0) / sigma + c z (Eq. 12, Song et al. 2021, in sigma); x0 at sigma' = 0."""
    if sigma_next == 0:
        return x0
    x = x0 + math.sqrt(max(sigma_next**2 - c**2, 0.0)) * (x - x0) / sigma
    return x + c * noise(x) if c > 0 else x


def posterior_std(sigma: float, sigma_next: float) -> float:
    """Standard deviation of the DDPM posterior between levels sigma > sigma' (module docstring)."""
    return sigma_next * math.sqrt(sigma**2 - sigma_next**2) / sigma


def ddim(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None, eta: float = 0.0) -> Tensor:
    """DDIM steps with stochasticity eta in [0, 1] (0: deterministic, 1: DDPM ancestral)."""
    return _ancestral(D, x, sigmas, cond=cond, noise=noise, callback=callback,
                      noise_std=lambda s, s_next: eta * posterior_std(s, s_next))


def ddpm_ancestral(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None) -> Tensor:
    """Ancestral sampling from the posterior q(x_{t-1} | x_t, x0 = D(x_t)) expressed in sigma; a denoiser
    with learned variances (D.learned_variance) sets each step's variance itself."""
    if getattr(D, "learned_variance", False):
        return _learned_variance_ancestral(D, x, sigmas, cond=cond, noise=noise, callback=callback)
    return ddim(D, x, sigmas, cond=cond, noise=noise, callback=callback, eta=1.0)


def _learned_variance_ancestral(D, x: Tensor, sigmas: Tensor, *, cond, noise, callback) -> Tensor:
    """Posterior mean x0 + (sigma'^2 / sigma^2)(x - x0) plus noise whose VP variance interpolates the
    step's beta and beta~ by the network's v (Eq. 15, Nichol & Dhariwal 2021), for any grid of a VP
    process (the step's betas from its two levels, as in their respacing); VE variance = VP variance *
    (1 + sigma'^2)."""
    from ..vlb import learned_log_variance, step_log_betas

    noise = noise or default_noise
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        x0, v = D.denoise_with_variance(x, torch.full((x.shape[0],), sigma, dtype=torch.float64), cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        if sigma_next == 0:
            return x0.to(x.dtype)
        log_beta, log_tilde = step_log_betas(torch.tensor(sigma), torch.tensor(sigma_next))
        log_var = learned_log_variance(v.double(), log_beta, log_tilde) + math.log1p(sigma_next**2)
        mean = x0 + (sigma_next**2 / sigma**2) * (x - x0)
        x = (mean + (0.5 * log_var).exp() * noise(x)).to(x.dtype)
    return x


def euler_ancestral(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None,
                    eta: float = 1.0) -> Tensor:
    """An Euler step down to sigma_down, then fresh noise of std sigma_up, with sigma_down^2 + sigma_up^2 =
    sigma'^2 and sigma_up = min(sigma', eta * posterior std): DDIM whose noise never exceeds sigma'."""
    return _ancestral(D, x, sigmas, cond=cond, noise=noise, callback=callback,
                      noise_std=lambda s, s_next: min(s_next, eta * posterior_std(s, s_next)))
