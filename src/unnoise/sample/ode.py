"""Deterministic samplers of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Eq. 4 with
sigma(t) = t, Karras et al. 2022), and Heun's method with optional churn (Algorithm 2, same paper)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import default_noise


def _sigma_batch(sigma: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), sigma, dtype=torch.float64, device=x.device)


def denoise(D, x: Tensor, sigma: float, cond) -> Tensor:
    """One model call at level sigma for the whole batch."""
    return D(x, _sigma_batch(sigma, x), cond)


def euler(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None) -> Tensor:
    """Euler steps x' = x + (sigma' - sigma) d with d = (x - D) / sigma. One model call per step."""
    sigmas = sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        d = (x - x0) / sigma
        x = x0 if sigma_next == 0 else x + (sigma_next - sigma) * d
    return x


def heun(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None,
         churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0) -> Tensor:
    """EDM Algorithm 2: optional churn to sigma_hat = sigma (1 + gamma), an Euler step, and a
    second-order correction unless the next sigma is 0. 2N - 1 model calls when churn = 0."""
    noise = noise or default_noise
    sigmas = sigmas.tolist()
    n = len(sigmas) - 1
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        gamma = min(churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # Alg. 2, line 6: add noise to reach sigma_hat
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * noise(x)
        x0 = denoise(D, x, sigma_hat, cond)
        if callback is not None:
            callback(i, sigma_hat, x, x0)
        d = (x - x0) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        if sigma_next != 0:  # Alg. 2, lines 9-11: trapezoidal correction
            d_next = (x_next - denoise(D, x_next, sigma_next, cond)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
    return x
