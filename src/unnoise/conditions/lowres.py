"""Low-resolution images (SR3 super-resolution, Saharia et al. 2021): the network denoises the
high-resolution image with the low-resolution one, upsampled bicubically to full size, concatenated to
its input channels. The low-resolution image of a training image is its factor x factor average pool,
the same measurement the zero-shot restoration methods use. The part is the upsampled image
(B, C, H, W); it has no null (a super-resolution network always sees its input), so it is never dropped."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UnnoiseError

FACTORS = (2, 4)


def average_pool(x: Tensor, factor: int) -> Tensor:
    """(B, C, H, W) -> (B, C, H/f, W/f): the mean of each f x f block."""
    if x.ndim != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise UnnoiseError(f"image size {tuple(x.shape[-2:])} is not divisible by the factor {factor}")
    return F.avg_pool2d(x, factor)


def upsample_bicubic(y: Tensor, scale: int) -> Tensor:
    """(B, C, h, w) -> (B, C, scale h, scale w) by bicubic interpolation, clamped to the data range."""
    if y.ndim != 4:
        raise UnnoiseError(f"expected a (B, C, H, W) low-resolution batch, got shape {tuple(y.shape)}")
    return F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1.0, 1.0)


class LowResCondition:
    name, key, request_key, droppable = "lowres", "lowres", "lowres", False

    def __init__(self, factor: int, shape: tuple):
        if factor not in FACTORS:
            raise UnnoiseError(f"model.super_resolution (model.lowres_factor) must be 0 (off), 2 or 4, "
                               f"got {factor!r}")
        if len(shape) != 3 or shape[-1] % factor or shape[-2] % factor:
            raise UnnoiseError(f"model.super_resolution={factor} needs images whose size is divisible by it, "
                               f"got data of shape {tuple(shape)}")
        self.factor, self.shape = factor, tuple(shape)

    def network_options(self) -> dict:
        return {"cond_channels": self.shape[0]}

    def upsampled(self, low_res: Tensor) -> Tensor:
        """The part for low-resolution images (B, C, h, w)."""
        return upsample_bicubic(low_res, self.factor)

    def from_batch(self, batch: dict) -> Tensor:
        """Each training image paired with its own x`factor` average pool, upsampled."""
        return self.upsampled(average_pool(batch["x"], self.factor))

    def null(self, n: int, device=None):
        raise UnnoiseError("a super-resolution run has no unconditional model: it needs a low-resolution image")

    def dropout(self, part: Tensor, p: float, generator: torch.Generator) -> Tensor:
        return part

    def from_request(self, value, n: int, device=None) -> Tensor:
        """The part for low-resolution images (n, C, h, w) (or one, repeated) in [-1, 1]."""
        value = torch.as_tensor(value)
        c, h, w = self.shape[0], self.shape[1] // self.factor, self.shape[2] // self.factor
        if value.ndim == 3:
            value = value[None]
        if value.ndim != 4 or tuple(value.shape[1:]) != (c, h, w) or len(value) not in (1, n):
            raise UnnoiseError(f"lowres: expected {n} low-resolution images of shape ({c}, {h}, {w}), "
                               f"got shape {tuple(value.shape)}")
        value = value.expand(n, c, h, w).to(device=device, dtype=torch.float32)
        return self.upsampled(value)
