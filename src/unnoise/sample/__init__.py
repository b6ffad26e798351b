"""Samplers: plain functions `sampler(D, x, sigmas, *, cond, noise, callback) -> x` over a decreasing
grid of sigmas ending at 0, and `generate`, which draws the seeded starting noise and runs one."""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from ..errors import unknown_name
from .noise import SeededNoise, default_noise
from .ode import euler, heun
from .sde import ddim, ddpm_ancestral

SAMPLERS = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ddpm": ddpm_ancestral,
}
STOCHASTIC = {"ddpm", "ddim", "heun"}


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


__all__ = ["SAMPLERS", "SeededNoise", "default_noise", "ddim", "ddpm_ancestral", "euler", "generate",
           "get_sampler", "heun"]
