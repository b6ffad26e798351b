"""Dilated residual stack for waveforms (DiffWave, Kong et al. 2021, Sec. 3 and Fig. 2).

A 1x1 input convolution lifts the signal (B, C, L) to `residual_channels`; each residual layer adds the
projected noise (and class) embedding, applies a dilated convolution (kernel 3, dilation 2^(i mod cycle))
to 2C channels, the gated unit tanh(a) * sigmoid(b), and a 1x1 convolution split into a residual (added
to the layer's input, scaled by 1/sqrt(2)) and a skip output; the skips are summed (scaled by
1/sqrt(layers)) and mapped to the output by ReLU - 1x1 conv - ReLU - 1x1 conv, the last one zero-initialised.
With 20 layers in cycles of 10 the receptive field is 2 * 2 * (2^10 - 1) + 1 = 4,093 samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import zero_
from .config import require
from .embedding import EMBEDDINGS, ClassConditioned, Conditioning, named_condition


@dataclass(frozen=True)
class WaveNetConfig:
    """Hyper-parameters of :class:`WaveNet`: ``length`` is the signal length (any length works; it is
    recorded for the run), ``layers`` residual layers with dilations cycling through 1, 2, ..., 2^(cycle-1)."""

    in_channels: int
    length: int = 4000
    residual_channels: int = 64
    layers: int = 20
    cycle: int = 10
    emb_dim: int = 256
    embedding: str = "sinusoidal"
    num_classes: int = 0
    out_channels: int | None = None

    def __post_init__(self) -> None:
        require(self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}")
        require(self.length >= 1, f"length must be >= 1, got {self.length}")
        require(self.residual_channels >= 1, f"residual_channels must be >= 1, got {self.residual_channels}")
        require(self.layers >= 1 and self.cycle >= 1, f"layers and cycle must be >= 1, got {self.layers}, {self.cycle}")
        require(self.emb_dim >= 2, f"emb_dim must be >= 2, got {self.emb_dim}")
        require(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        require(self.out_channels is None or self.out_channels >= 1, f"out_channels must be >= 1, got {self.out_channels}")
        require(self.embedding in EMBEDDINGS,
                f"unknown embedding {self.embedding!r}; valid: {', '.join(sorted(EMBEDDINGS))}")

    @property
    def receptive_field(self) -> int:
        """Samples one output sees: 1 + 2 * sum of the dilations (kernel 3)."""
        return 1 + 2 * sum(2 ** (i % self.cycle) for i in range(self.layers))


class ResidualLayer(nn.Module):
    """One DiffWave layer: (h, emb) -> ((h + residual) / sqrt(2), skip) (Fig. 2, Kong et al. 2021)."""

    def __init__(self, channels: int, emb_dim: int, dilation: int):
        super().__init__()
        self.emb_proj = nn.Linear(emb_dim, channels)
        self.dilated = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.dilated(h + self.emb_proj(emb)[:, :, None]).chunk(2, dim=1)  # (B, 2C, L) -> 2 x (B, C, L)
        residual, skip = self.out(torch.tanh(a) * torch.sigmoid(b)).chunk(2, dim=1)
        return (h + residual) / math.sqrt(2.0), skip


class WaveNet(ClassConditioned, nn.Module):
    """DiffWave-style denoiser: ``forward(x, t, cond=None)`` with x (B, C, L), t (B,), labels (B,) or None."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = c = config
        ch = c.residual_channels
        self.cond_embed = Conditioning(c.embedding, c.emb_dim // 2, c.emb_dim, c.num_classes)
        self.inp = nn.Sequential(nn.Conv1d(c.in_channels, ch, 1), nn.ReLU())
        self.layers = nn.ModuleList(ResidualLayer(ch, c.emb_dim, 2 ** (i % c.cycle)) for i in range(c.layers))
        out_channels = c.in_channels if c.out_channels is None else c.out_channels
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(ch, ch, 1), nn.ReLU(), zero_(nn.Conv1d(ch, out_channels, 1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"WaveNet expects (B, {self.config.in_channels}, L) input, got shape {tuple(x.shape)}")
        emb = self.cond_embed(t, self._parts(cond), x.shape[0])  # (B, emb_dim)
        h, skips = self.inp(x), 0.0
        for layer in self.layers:
            h, skip = layer(h, emb)
            skips = skips + skip
        return self.head(skips / math.sqrt(len(self.layers)))

    def _parts(self, cond) -> dict:
        """Named condition parts; only a label is taken (image conditions need a U-Net)."""
        parts = named_condition(cond)
        if "lowres" in parts:
            raise ValueError(f"{type(self).__name__} takes no image condition (use a U-Net)")
        return parts
