"""Trained conditional super-resolution (SR3, Saharia et al. 2021): the network denoises the
high-resolution image with the low-resolution one, upsampled bicubically to full size, concatenated
to its input channels. The low-resolution image is the average-pooled one (`Downsample`), so the same
measurement serves the zero-shot methods and the baselines."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UnnoiseError
from ..conditions.lowres import average_pool, upsample_bicubic  # noqa: F401 (re-exported)


def sr_condition(low_res: Tensor, scale: int) -> dict[str, Tensor]:
    """The SR3 network's condition for low-resolution images (B, C, h, w)."""
    return {"image": upsample_bicubic(low_res, scale)}


def sr_training_condition(x0: Tensor, scale: int) -> dict[str, Tensor]:
    """The condition a training image x0 (B, C, H, W) is paired with: its own x`scale` downsampling."""
    return sr_condition(average_pool(x0, scale), scale)


@torch.no_grad()
def super_resolve(D, low_res: Tensor, scale: int, sigmas: Tensor, x: Tensor, *, sampler=None, noise=None,
                  callback=None) -> Tensor:
    """Samples of the high-resolution images: `sampler` (default Heun) run from x (at sigmas[0], one row
    per low-resolution image) with the SR3 denoiser D conditioned on `low_res`."""
    if sampler is None:
        from ..sample.ode import heun as sampler
    if low_res.shape[0] != x.shape[0]:
        raise UnnoiseError(f"{low_res.shape[0]} low-resolution images for {x.shape[0]} samples")
    return sampler(D, x, sigmas, cond=sr_condition(low_res, scale), noise=noise, callback=callback)
