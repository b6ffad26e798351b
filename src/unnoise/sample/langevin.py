"""Score-based samplers that read the score (D(x, sigma) - x) / sigma^2 of any denoiser."""
from __future__ import annotations

import math

from torch import Tensor

from .noise import default_noise
from .ode import denoise


def langevin_corrector(D, x: Tensor, sigma: float, *, cond, noise, snr: float, steps: int) -> Tensor:
    """Langevin MCMC at fixed sigma: x <- x + eps score + sqrt(2 eps) z (Algorithm 5, Song et al. 2021).

    The paper sets eps = 2 (snr ||z|| / ||score||)^2 from batch-averaged norms. We use the expected
    norms instead, ||z|| ~ sqrt(d) and ||score|| ~ sqrt(d) / sigma (the noisy marginal's score scale),
    so eps = 2 (snr sigma)^2: a sample's step never depends on the rest of its batch, and a sample
    that happens to sit where the score vanishes cannot take a huge step.
    """
    eps = 2 * (snr * sigma) ** 2
    for _ in range(steps):
        score = (denoise(D, x, sigma, cond) - x) / sigma**2
        x = x + eps * score + math.sqrt(2 * eps) * noise(x)
    return x


def predictor_corrector(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None,
                        snr: float = 0.16, corrector_steps: int = 1) -> Tensor:
    """PC sampling (Song et al. 2021): Langevin corrector steps at each level, then an ancestral
    (reverse-diffusion) predictor step to the next level; the last step denoises to sigma = 0."""
    noise = noise or default_noise
    sigmas = sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x = langevin_corrector(D, x, sigma, cond=cond, noise=noise, snr=snr, steps=corrector_steps)
        x0 = denoise(D, x, sigma, cond)
        if callback is not None:
            callback(i, sigma, x, x0)
        if sigma_next == 0:
            return x0
        ratio = sigma_next**2 / sigma**2  # DDPM posterior in sigma: mean x0 + ratio (x - x0)
        x = x0 + ratio * (x - x0) + math.sqrt(sigma_next**2 * (1 - ratio)) * noise(x)
    return x


def annealed_langevin(D, x: Tensor, sigmas: Tensor, *, cond=None, noise=None, callback=None,
                      step_size: float = 2e-5, steps_per_level: int = 100, denoise_last: bool = True) -> Tensor:
    """Annealed Langevin dynamics (Algorithm 1, Song & Ermon 2019): at each sigma_i, `steps_per_level`
    updates x <- x + (a_i / 2) score + sqrt(a_i) z with a_i = step_size sigma_i^2 / sigma_L^2, then
    (optionally) one denoising step D(x, sigma_L) (Jolicoeur-Martineau et al. 2021)."""
    noise = noise or default_noise
    levels = [s for s in sigmas.tolist() if s > 0]
    sigma_last = levels[-1]
    for i, sigma in enumerate(levels):
        a = step_size * sigma**2 / sigma_last**2
        for _ in range(steps_per_level):
            x0 = denoise(D, x, sigma, cond)
            x = x + 0.5 * a * (x0 - x) / sigma**2 + math.sqrt(a) * noise(x)
        if callback is not None:
            callback(i, sigma, x, x0)
    return denoise(D, x, sigma_last, cond) if denoise_last else x


__all__ = ["annealed_langevin", "langevin_corrector", "predictor_corrector"]
