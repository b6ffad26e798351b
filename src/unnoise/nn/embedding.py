"""Embeddings of the noise-conditioning input and of class labels.

Every network receives the noise level as a float tensor ``t`` of shape (B,), in a
DDPM-like range (roughly [-500, 1000]; fractional and negative values allowed),
and optionally class labels ``cond`` of shape (B,). :class:`Conditioning` turns both
into a single vector per example that the network blocks consume.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..conditions.base import named_condition  # noqa: F401 (networks read named condition parts)
from ..errors import unknown_name


def _sinusoids(args: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos(args), sin(args)], zero-padded to ``dim`` columns. (B, dim//2) -> (B, dim)."""
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class SinusoidalEmbedding(nn.Module):
    """Transformer sinusoids of a scalar (Vaswani et al. 2017), as in DDPM (Ho et al. 2020).

    Frequencies run geometrically from 1 down to 1/max_period, so inputs of order
    1e3 are resolved smoothly by the low frequencies and finely by the high ones.
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"embedding dim must be >= 2, got {dim}")
        self.dim = dim
        self.max_period = max_period
        half = dim // 2
        exponents = torch.arange(half, dtype=torch.float64) / half
        freqs = torch.exp(-math.log(max_period) * exponents)
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` (B,) -> (B, dim)."""
        args = t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs  # (B, 1) * (half,) -> (B, half)
        return _sinusoids(args, self.dim)


class FourierEmbedding(nn.Module):
    """Random Fourier features (Tancik et al. 2020), as used by NCSN++ / EDM.

    Frequencies f ~ N(0, scale^2) are drawn once and stored as a buffer, so they are
    saved in the ``state_dict``. Fourier features are designed for inputs of order 1
    (EDM feeds ln(sigma)/4); ``input_scale`` (default 1e-3) first maps the library's
    DDPM-like range (~1e3) to that order. Use ``input_scale=1`` for O(1) inputs.
    """

    def __init__(self, dim: int, scale: float = 16.0, input_scale: float = 1e-3):
        super().__init__()
        if dim < 2:
            raise ValueError(f"embedding dim must be >= 2, got {dim}")
        self.dim = dim
        self.input_scale = input_scale
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` (B,) -> (B, dim)."""
        t = t.reshape(-1, 1).to(self.freqs.dtype) * self.input_scale
        args = 2 * math.pi * t * self.freqs  # (B, 1) * (half,) -> (B, half)
        return _sinusoids(args, self.dim)


EMBEDDINGS = {"sinusoidal": SinusoidalEmbedding, "fourier": FourierEmbedding}


def make_embedding(kind: str, dim: int) -> nn.Module:
    """Build the raw (parameter-free) noise embedding named ``kind``."""
    if kind not in EMBEDDINGS:
        raise unknown_name("embedding", kind, EMBEDDINGS)
    return EMBEDDINGS[kind](dim)


class NoiseEmbedding(nn.Module):
    """Raw embedding of ``t`` followed by a Linear-SiLU-Linear MLP: (B,) -> (B, hidden)."""

    def __init__(self, kind: str, dim: int, hidden: int):
        super().__init__()
        self.embed = make_embedding(kind, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``t`` (B,) -> (B, hidden)."""
        return self.mlp(self.embed(t).to(self.mlp[0].weight.dtype))


class ClassEmbedding(nn.Module):
    """Learned class vectors with one extra "null" row (index ``num_classes``).

    The null row stands for "no label" and is what classifier-free guidance
    (Ho & Salimans 2022) uses for the unconditional branch.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.null_class = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Look up labels (B,) -> (B, dim); ``None`` means the null class for all."""
        if cond is None:
            cond = torch.full((batch,), self.null_class, device=self.table.weight.device)
        cond = torch.as_tensor(cond, device=self.table.weight.device).long().reshape(-1)
        if cond.shape[0] != batch:
            raise ValueError(f"cond has {cond.shape[0]} labels for a batch of {batch}")
        return self.table(cond)


def noise_batch(t: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """Return ``t`` as a float tensor of shape (batch,); a scalar is broadcast."""
    t = torch.as_tensor(t, device=device)
    if not t.is_floating_point():
        t = t.float()
    if t.ndim == 0:
        t = t.expand(batch)
    t = t.reshape(-1)
    if t.shape[0] != batch:
        raise ValueError(f"t has {t.shape[0]} values for a batch of {batch}")
    return t


class Conditioning(nn.Module):
    """Noise embedding plus the class embedding and the projected pooled text: (t, cond) -> (B, hidden)."""

    def __init__(self, kind: str, dim: int, hidden: int, num_classes: int = 0, context_dim: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.noise = NoiseEmbedding(kind, dim, hidden)
        self.classes = ClassEmbedding(num_classes, hidden) if num_classes > 0 else None
        self.text = nn.Linear(context_dim, hidden) if context_dim > 0 else None

    def forward(self, t: torch.Tensor, cond: dict, batch: int) -> torch.Tensor:
        """Embed noise input ``t`` (B,) with the named condition parts ``cond`` (see `named_condition`):
        "label" (B,) (missing: the null class), "text" with "pooled" (B, D) -> (B, hidden)."""
        device = self.noise.mlp[0].weight.device
        emb = self.noise(noise_batch(t, batch, device))
        if self.text is not None:
            if "text" not in cond:
                raise ValueError("this network is text-conditioned: cond needs a 'text' part with tokens, mask, pooled")
            emb = emb + self.text(cond["text"]["pooled"].to(emb.dtype))
        elif "text" in cond:
            raise ValueError("text cond was given but the network has no text conditioning (context_dim=0)")
        if self.classes is not None:
            emb = emb + self.classes(cond.get("label"), batch)
        elif cond.get("label") is not None:
            raise ValueError("cond was given but the network has no classes (num_classes=0)")
        return emb


class ClassConditioned:
    """Mixin for networks whose `config.num_classes` sets their class embedding."""

    @property
    def num_classes(self) -> int:
        """Number of real classes (0 = unconditional)."""
        return self.config.num_classes

    @property
    def null_class(self) -> int:
        """Label index meaning "no class" (classifier-free guidance)."""
        return self.config.num_classes
