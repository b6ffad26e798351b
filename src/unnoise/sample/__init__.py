"""Samplers: plain functions `sampler(D, x, sigmas, *, cond, noise, callback) -> x` over a decreasing
grid of sigmas ending at 0, and `generate`, which draws the seeded starting noise and runs one."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .auto.fitted import FittedSteps, fit_steps, fitted_multistep
from .langevin import annealed_langevin, predictor_corrector
from .multistep import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, multistep, pc_multistep
from .noise import SeededNoise, default_noise
from .ode import euler, heun
from .registry import DETERMINISTIC, FIXED, SAMPLERS, STOCHASTIC, SamplerSpec, get_sampler, sampler_spec
from .sde import ddim, ddpm_ancestral, euler_ancestral


@torch.no_grad()
def generate(D, shape: Sequence[int], sigmas: Tensor, sampler="heun", *, seeds: Sequence[int],
             cond=None, callback=None, device=None, dtype=torch.float32) -> Tensor:
    """Samples of per-sample `shape` from noise seeded per sample (drawn on the host, so every device
    gives the same starting noise), run through `sampler` on `sigmas`, on `device` (default: the host)."""
    fn = get_sampler(sampler) if isinstance(sampler, str) else sampler
    noise = SeededNoise(seeds, device)
    x = noise.initial(shape, float(sigmas[0]), dtype=dtype)
    return fn(D, x, sigmas, cond=cond, noise=noise, callback=callback)


__all__ = ["DETERMINISTIC", "FIXED", "FittedSteps", "SAMPLERS", "STOCHASTIC", "SamplerSpec", "SeededNoise",
           "annealed_langevin", "ddim", "ddpm_ancestral", "default_noise", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m",
           "euler", "euler_ancestral", "fit_steps", "fitted_multistep", "generate", "get_sampler", "heun",
           "multistep", "pc_multistep", "predictor_corrector", "sampler_spec"]
