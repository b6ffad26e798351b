"""Samplers: plain functions `sampler(D, x, sigmas, *, cond, noise, callback) -> x` over a decreasing
grid of sigmas ending at 0, and `generate`, which draws the seeded starting noise and runs one."""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from ..errors import unknown_name
from .auto.fitted import FittedSteps, fit_steps, fitted_multistep
from .langevin import annealed_langevin, predictor_corrector
from .multistep import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, multistep, pc_multistep
from .noise import SeededNoise, default_noise
from .ode import euler, heun
from .sde import ddim, ddpm_ancestral, euler_ancestral

SAMPLERS = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ddpm": ddpm_ancestral,
    "euler_ancestral": euler_ancestral,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "pc_multistep": pc_multistep,
    "langevin_pc": predictor_corrector,
    "annealed_langevin": annealed_langevin,
}
STOCHASTIC = {"ddpm", "ddim", "heun", "euler_ancestral", "dpmpp_2m_sde", "langevin_pc", "annealed_langevin"}


def get_sampler(name: str, **options):
    """The sampler registered as `name`, with options (eta, churn, ...) bound."""
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, SAMPLERS)
    fn = SAMPLERS[name]
    return functools.partial(fn, **options) if options else fn


@torch.no_grad()
def generate(D, shape: Sequence[int], sigmas: Tensor, sampler="heun", *, seeds: Sequence[int],
             cond=None, callback=None, device="cpu") -> Tensor:
    """Samples of per-sample `shape` from noise seeded per sample, run through `sampler` on `sigmas`."""
    fn = get_sampler(sampler) if isinstance(sampler, str) else sampler
    noise = SeededNoise(seeds, device)
    x = noise.initial(shape, float(sigmas[0]))
    return fn(D, x, sigmas, cond=cond, noise=noise, callback=callback)


__all__ = ["FittedSteps", "SAMPLERS", "STOCHASTIC", "SeededNoise", "annealed_langevin", "ddim", "ddpm_ancestral",
           "default_noise", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m", "euler", "euler_ancestral", "fit_steps",
           "fitted_multistep", "generate", "get_sampler", "heun", "multistep", "pc_multistep", "predictor_corrector"]
