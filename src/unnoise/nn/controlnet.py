"""ControlNet (Zhang, Rao & Agrawala 2023): spatial control of a trained, frozen U-Net.

A trainable copy of the base U-Net's encoder and middle block reads the noisy input plus an encoded
control image (edges, a segmentation map, a sketch); a zero-initialised 1x1 convolution per skip and one
for the middle block turn its features into residuals that the frozen base adds to its own skips
(`UNet.forward(..., residuals=...)`). Eq. 2 of the paper:

    y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2)

with F the base (Theta frozen), Theta_c the copy, Z the zero convolutions. Because Z starts at zero the
controlled network starts as the base, bit for bit.

`ControlledUNet` pairs the frozen base with a ControlNet and reads the condition part
cond["control"] = {"images": (B, K, C_ctrl, H_c, W_c), "scales": (B, K)}: K control images per sample
run through the same ControlNet and their residuals add up, each times its scale (scale 0: that control
is skipped; every scale 0: exactly the base).
"""
from __future__ import annotations

import copy
import math

from torch import Tensor, nn

from ..conditions.base import named_condition
from .blocks import conv_nd, zero_
from .unet import UNet

HINT_CHANNELS = (16, 32)  # widths of the control-image encoder (the paper's uses 16..256 at 512 px)


class HintEncoder(nn.Module):
    """The control image (B, C_ctrl, H_c, W_c) in [0, 1] -> features (B, C0, H_c / f, W_c / f) at the U-Net's
    first feature resolution (f = `downsample`, a power of 2: one stride-2 convolution per halving). The
    last convolution starts at zero, as in the reference design, so the copy starts on the base's input."""

    def __init__(self, control_channels: int, out_channels: int, downsample: int = 1, dims: int = 2):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"the control image must be a power-of-2 multiple of the first feature size, "
                             f"got a factor {downsample}")
        narrow, wide = HINT_CHANNELS
        layers: list[nn.Module] = [conv_nd(dims, control_channels, narrow, 3, padding=1), nn.SiLU()]
        width = narrow
        for _ in range(int(math.log2(downsample))):  # each halves the size
            layers += [conv_nd(dims, width, wide, 3, stride=2, padding=1), nn.SiLU()]
            width = wide
        layers += [conv_nd(dims, width, wide, 3, padding=1), nn.SiLU(),
                   zero_(conv_nd(dims, wide, out_channels, 3, padding=1))]
        self.layers = nn.Sequential(*layers)

    def forward(self, control: Tensor) -> Tensor:
        return self.layers(control)


def encoder_copy(base: UNet) -> UNet:
    """A trainable deep copy of `base` without its decoder and head: its `encode` still runs."""
    encoder = copy.deepcopy(base)
    encoder.up, encoder.head = nn.ModuleList(), nn.Identity()
    return encoder.requires_grad_(True)


class ControlNet(nn.Module):
    """forward(x, t, cond, control) -> residuals for `UNet.forward`: one per skip (stem first), then the
    middle block's. `x`, `t`, `cond` are what the base receives; `control` (B, C_ctrl, H_c, W_c) in [0, 1]."""

    def __init__(self, encoder: UNet, control_channels: int, downsample: int = 1):
        super().__init__()
        c = encoder.config
        self.control_channels, self.downsample = int(control_channels), int(downsample)
        self.encoder = encoder
        self.hint = HintEncoder(control_channels, encoder.skip_channels[0], downsample, c.dims)
        self.zero_convs = nn.ModuleList(zero_(conv_nd(c.dims, ch, ch, 1)) for ch in encoder.skip_channels)
        self.middle_out = zero_(conv_nd(c.dims, c.mid_channels, c.mid_channels, 1))

    @classmethod
    def from_unet(cls, base: UNet, control_channels: int, control_factor: int = 1) -> "ControlNet":
        """A ControlNet for `base`: its encoder and middle block copied (weights included). The control
        image is `control_factor` times the size of the base's input (1 for pixel runs, the codec's
        downsampling for latent runs)."""
        if not isinstance(base, UNet):
            raise ValueError(f"ControlNet needs a U-Net base, got {type(base).__name__}")
        if control_channels < 1:
            raise ValueError(f"control_channels must be >= 1, got {control_channels}")
        return cls(encoder_copy(base), control_channels, control_factor * base.config.patch_size)

    def forward(self, x: Tensor, t: Tensor, cond, control: Tensor) -> list[Tensor]:
        expected = tuple(s * self.downsample // self.encoder.config.patch_size for s in x.shape[2:])
        if control.ndim != x.ndim or control.shape[1] != self.control_channels or tuple(control.shape[2:]) != expected:
            raise ValueError(f"control image must be (B, {self.control_channels}, {', '.join(map(str, expected))}), "
                             f"got shape {tuple(control.shape)}")
        hint = self.hint(control.to(x.dtype))  # (B, C0, *S / p): the first feature resolution
        skips, middle, _, _ = self.encoder.encode(x, t, cond, stem_residual=hint)
        residuals = [zero(s) for zero, s in zip(self.zero_convs, skips, strict=True)]
        return residuals + [self.middle_out(middle)]


def weighted_residuals(controlnet: ControlNet, x: Tensor, t: Tensor, cond, part: dict | None):
    """The residuals of every control of `part` {"images": (B, K, C, H, W), "scales": (B, K)}, each times its
    per-sample scale, summed; controls whose scale is 0 in every row are skipped; None when none is left."""
    if part is None:
        return None
    images, scales = part["images"], part["scales"]
    total = None
    for k in range(images.shape[1]):
        scale = scales[:, k]
        if not bool((scale != 0).any()):
            continue
        weight = scale.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ...)
        residuals = [weight * r for r in controlnet(x, t, cond, images[:, k])]
        total = residuals if total is None else [a + b for a, b in zip(total, residuals)]
    return total


class ControlledUNet(nn.Module):
    """The frozen base U-Net plus a ControlNet: forward(x, t, cond) with cond["control"] (see the module
    docstring); the other condition parts go to both. The base stays in eval mode and never trains."""

    def __init__(self, base: UNet, control: ControlNet):
        super().__init__()
        self.base, self.control = base.requires_grad_(False).eval(), control
        self.config = base.config

    @classmethod
    def from_unet(cls, base: UNet, control_channels: int, control_factor: int = 1) -> "ControlledUNet":
        """`base` (frozen from now on) with a ControlNet copied from it (see ControlNet.from_unet)."""
        return cls(base, ControlNet.from_unet(base, control_channels, control_factor))

    def train(self, mode: bool = True) -> "ControlledUNet":
        super().train(mode)
        self.base.eval()  # frozen: dropout off, whatever the mode
        return self

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        parts = dict(named_condition(cond))
        control = parts.pop("control", None)
        residuals = weighted_residuals(self.control, x, t, parts, control)
        return self.base(x, t, parts, residuals=residuals)
