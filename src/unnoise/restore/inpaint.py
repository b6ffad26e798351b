"""RePaint inpainting (Lugmayr et al. 2022) as a sampler, in variance-exploding coordinates.

Each step from sigma to sigma' < sigma draws the known pixels afresh from the forward process,
known + sigma' z (Alg. 1, line 5, Lugmayr et al. 2022: q(x_{t-1} | x0) in sigma), and the unknown ones by
the ancestral DDPM step from the model's x0 = D(x, sigma): x0 + (sigma'^2 / sigma^2)(x - x0) + c z with
the posterior std c = sigma' sqrt(sigma^2 - sigma'^2) / sigma (line 7), and joins them by the mask
(line 8). Resampling harmonises the two: after every `jump_length` steps the sample is re-noised by the
forward process back up `jump_length` levels, x + sqrt(sigma_i^2 - sigma_j^2) z (line 10, with the jumps
of their Sec. 4.3), and those steps are redone, `resample` times in all. The last step returns the
model's x0 on the unknown pixels and the known pixels bit for bit.

Not an exact posterior sampler: the unknown pixels are denoised from noisy known ones, which only
approaches conditioning on the known values with much resampling (see tests/test_restore_posterior.py).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..sample.noise import default_noise
from ..sample.ode import denoise
from ..sample.sde import posterior_std
from .operators import Mask, measurement_like


def repaint_schedule(steps: int, jump_length: int = 10, resample: int = 10) -> list[int]:
    """Indices into a grid of `steps` steps in the order RePaint visits them: down one index at a time,
    and at every `jump_length`-th index before the last, back up `jump_length` indices, `resample - 1`
    times, before going on (Sec. 4.3, Lugmayr et al. 2022). jump_length=1 is their Alg. 1."""
    if jump_length < 1 or resample < 1:
        raise UnnoiseError(f"RePaint needs jump_length >= 1 and resample >= 1, got {jump_length} and {resample}")
    path, i, jumps = [0], 0, {}
    while i < steps:
        i += 1
        path.append(i)
        if i % jump_length == 0 and i < steps and jumps.get(i, 0) < resample - 1:
            jumps[i] = jumps.get(i, 0) + 1
            i -= jump_length
            path.append(i)
    return path


def repaint(D, x: Tensor, sigmas: Tensor, *, mask: Tensor | Mask, known: Tensor, cond=None, noise=None,
            callback=None, jump_length: int = 10, resample: int = 10) -> Tensor:
    """RePaint from x at sigmas[0]: pixels where `mask` is 1 come from `known` ((B or 1, C, H, W)), the
    rest from D. Model calls: about (len(sigmas) - 1) * resample; callback(call, sigma, x, x0) counts them.
    Bind mask and known (functools.partial) to get a sampler of the usual signature."""
    noise = noise or default_noise
    on = (mask if isinstance(mask, Mask) else Mask(mask)).on(x)
    known = measurement_like(known, x).expand_as(x)
    sigmas, path = sigmas.tolist(), repaint_schedule(len(sigmas) - 1, jump_length, resample)
    calls = 0
    for i, j in zip(path[:-1], path[1:]):
        if j < i:  # re-noise from sigma_i up to sigma_j (Alg. 1, line 10)
            x = x + math.sqrt(sigmas[j] ** 2 - sigmas[i] ** 2) * noise(x)
            continue
        x = _step(D, x, sigmas[i], sigmas[j], on, known, cond, noise, callback, calls)
        calls += 1
    return x


def _step(D, x: Tensor, sigma: float, sigma_next: float, on: Tensor, known: Tensor, cond, noise, callback,
          call: int) -> Tensor:
    """One RePaint denoising step from sigma to sigma_next (Alg. 1, lines 4-8, Lugmayr et al. 2022)."""
    x0 = denoise(D, x, sigma, cond)
    if callback is not None:
        callback(call, sigma, x, x0)
    if sigma_next == 0:
        return torch.where(on, known, x0)
    z = noise(x)  # one draw: its known pixels noise the measurement, its unknown ones the ancestral step
    c = posterior_std(sigma, sigma_next)
    unknown = x0 + (sigma_next**2 / sigma**2) * (x - x0) + c * z  # Eq. 7, Ho et al. 2020, in sigma
    return torch.where(on, known + sigma_next * z, unknown)
