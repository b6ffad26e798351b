"""Posterior samples for a batch of measurements with any restoration method, seeded per sample.

One entry point for the command line and the benchmark: `posterior_samples(D, task, y, ...)` draws one
sample per seed, the measurement rows paired with the seeds (a single row broadcasts), so K samples of
each of N images are N*K rows, and any batching of them gives the same samples.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError, unknown_name
from ..sample.noise import SeededNoise
from ..sample.ode import heun
from ..sample.sde import ddpm_ancestral
from .dps import dps
from .inpaint import repaint
from .operators import LinearOperator, Mask
from .posterior import tweedie_conditioned
from .projection import consistent, ddnm, restore
from .superres import super_resolve

METHODS = ("ddnm", "tweedie", "repaint", "dps", "sr3")


@dataclass(frozen=True)
class MethodOptions:
    """Per-method settings: RePaint's jumps, DPS's step size, Tweedie's CG iterations."""

    jump_length: int = 10
    resample: int = 5
    zeta: float = 1.0
    cg_iterations: int = 20


def check_method(method: str, operator: LinearOperator | None, sr_scale: int = 0) -> None:
    """One-line errors for a method that cannot serve this operator (or model)."""
    if method not in METHODS:
        raise unknown_name("restoration method", method, METHODS)
    if (method == "sr3") != bool(sr_scale):
        raise UnnoiseError("method 'sr3' needs a super-resolution run (model.conditions: lowres), and a "
                           "super-resolution run only does 'sr3'")
    if method == "repaint" and not isinstance(operator, Mask):
        raise UnnoiseError("method 'repaint' only inpaints (a mask operator)")
    if method == "ddnm" and operator is not None and operator.noise_std > 0:
        raise UnnoiseError(f"method 'ddnm' needs a noiseless measurement (noise std {operator.noise_std}); "
                           "use tweedie or dps")


@torch.no_grad()
def posterior_samples(D, operator: LinearOperator | None, y: Tensor, shape: Sequence[int], sigmas: Tensor, *,
                      method: str, seeds: Sequence[int], sr_scale: int = 0, options: MethodOptions = MethodOptions(),
                      callback=None, cond=None, device=None) -> Tensor:
    """One restoration per seed of the measurement rows y (len(seeds) rows, or 1) under `operator` (None
    for 'sr3', where y is the low-resolution image and D the SR3 model, conditioned on `cond` when given,
    else on y upsampled x`sr_scale`); samples have per-sample `shape` and start on `device`."""
    check_method(method, operator, sr_scale)
    noise = SeededNoise(seeds, device)
    x = noise.initial(shape, float(sigmas[0]))
    if method == "sr3":
        if cond is not None:
            return heun(D, x, sigmas, cond=cond, noise=noise, callback=callback)
        return super_resolve(D, y.expand(len(seeds), *y.shape[1:]), sr_scale, sigmas, x, noise=noise,
                             callback=callback)
    if method in ("ddnm", "tweedie"):
        transform = (ddnm if method == "ddnm" else
                     functools.partial(tweedie_conditioned, iterations=options.cg_iterations))
        return restore(D, operator, y, x, sigmas, method=transform, noise=noise, callback=callback)
    if method == "repaint":
        return repaint(D, x, sigmas, mask=operator, known=y, noise=noise, callback=callback,
                       jump_length=options.jump_length, resample=options.resample)
    out = ddpm_ancestral(dps(D, operator, y, sigmas, zeta=options.zeta), x, sigmas, noise=noise, callback=callback)
    return out if operator.noise_std > 0 else consistent(out, operator, y)
