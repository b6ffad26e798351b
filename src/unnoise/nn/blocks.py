"""Dimension-generic building blocks of the U-Net (``dims`` = 1 for signals, 2 for images)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}


def conv_nd(dims: int, in_ch: int, out_ch: int, kernel: int, **kwargs) -> nn.Module:
    """``ConvNd`` for ``dims`` spatial dimensions (1 or 2)."""
    if dims not in _CONVS:
        raise ValueError(f"dims must be one of {sorted(_CONVS)}, got {dims}")
    return _CONVS[dims](in_ch, out_ch, kernel, **kwargs)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with gcd(groups, channels) groups, so any channel count works."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def zero_(module: nn.Module) -> nn.Module:
    """Set all parameters of ``module`` to zero and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbedBlock(nn.Module):
    """A block whose forward also takes the conditioning vector: ``forward(x, emb)``."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class EmbedSequential(nn.Sequential):
    """Sequential container that passes ``emb`` to the :class:`EmbedBlock` children and the text
    ``context`` to the :class:`CrossAttentionBlock` children."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context=None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, EmbedBlock):
                x = layer(x, emb)
            elif isinstance(layer, CrossAttentionBlock):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class ResBlock(EmbedBlock):
    """Residual block (Ho et al. 2020; Dhariwal & Nichol 2021).

    h = Conv(SiLU(GN(x))); then the projected embedding e is added to h
    (``scale_shift=False``) or applied as GN(h) * (1 + s) + b (``scale_shift=True``);
    out = skip(x) + Conv(Dropout(SiLU(h))). ``skip`` is a 1x1 conv when channels change.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, *, dims: int = 2,
                 groups: int = 32, dropout: float = 0.0, scale_shift: bool = False):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(group_norm(in_ch, groups), nn.SiLU(),
                                       conv_nd(dims, in_ch, out_ch, 3, padding=1))
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch * (2 if scale_shift else 1)))
        self.norm2 = group_norm(out_ch, groups)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        conv_nd(dims, out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else conv_nd(dims, in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, *S), ``emb`` (B, E) -> (B, C_out, *S)."""
        h = self.in_layers(x)
        e = self.emb_proj(emb)
        e = e.reshape(*e.shape, *([1] * (h.ndim - 2)))  # (B, C') -> (B, C', 1, ...)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, with a residual connection."""

    def __init__(self, channels: int, num_heads: int = 4, groups: int = 32):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, *S) -> (B, C, *S)."""
        batch, channels = x.shape[:2]
        heads = self.num_heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, C, *S) -> (B, L, C)
        qkv = self.qkv(h).reshape(batch, -1, 3, heads, channels // heads)  # (B, L, 3C) -> (B, L, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # -> 3 x (B, H, L, D)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, D)
        a = a.transpose(1, 2).reshape(batch, -1, channels)  # (B, H, L, D) -> (B, L, C)
        return x + self.proj(a).transpose(1, 2).reshape(x.shape)  # (B, L, C) -> (B, C, *S)


class CrossAttentionBlock(nn.Module):
    """Multi-head attention from every position to the text tokens, with a residual connection
    (Rombach et al. 2022): queries from GN(x), keys and values from the (B, L, context_dim) tokens,
    padding tokens masked out. The output projection starts at zero, so the block starts as identity."""

    def __init__(self, channels: int, context_dim: int, num_heads: int = 4, groups: int = 32):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels, groups)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context) -> torch.Tensor:
        """``x`` (B, C, *S), context = (tokens (B, L, D), mask (B, L) bool) -> (B, C, *S)."""
        tokens, mask = context
        batch, channels = x.shape[:2]
        heads, width = self.num_heads, channels // self.num_heads
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # (B, C, *S) -> (B, N, C)
        q = q.reshape(batch, -1, heads, width).transpose(1, 2)  # -> (B, H, N, W)
        k, v = self.kv(tokens.to(q.dtype)).reshape(batch, -1, 2, heads, width).permute(2, 0, 3, 1, 4)  # 2 x (B, H, L, W)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, H, N, W)
        a = a.transpose(1, 2).reshape(batch, -1, channels)  # -> (B, N, C)
        return x + self.proj(a).transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Halve every spatial size with a stride-2 3-wide conv."""

    def __init__(self, channels: int, dims: int = 2):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *S/2)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double every spatial size: nearest-neighbour upsampling then a 3-wide conv."""

    def __init__(self, channels: int, dims: int = 2):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *2S)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
