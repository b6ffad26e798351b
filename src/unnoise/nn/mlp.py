"""Residual MLP denoiser network for low-dimensional data (and tiny images)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import require
from .embedding import EMBEDDINGS, ClassConditioned, Conditioning, named_condition


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of :class:`MLP`.

    ``in_dim`` is the flattened data size; ``depth`` the number of residual blocks;
    ``emb_dim`` the size of the conditioning vector; ``num_classes > 0`` adds a class
    embedding (plus a null class, index ``num_classes``); ``out_dim`` defaults to
    ``in_dim``; ``layer_norm`` puts a LayerNorm at the start of each block.
    """

    in_dim: int
    hidden: int = 256
    depth: int = 4
    emb_dim: int = 128
    embedding: str = "sinusoidal"
    num_classes: int = 0
    out_dim: int | None = None
    layer_norm: bool = True

    def __post_init__(self) -> None:
        require(self.in_dim >= 1, f"in_dim must be >= 1, got {self.in_dim}")
        require(self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}")
        require(self.depth >= 0, f"depth must be >= 0, got {self.depth}")
        require(self.emb_dim >= 2, f"emb_dim must be >= 2, got {self.emb_dim}")
        require(self.num_classes >= 0, f"num_classes must be >= 0, got {self.num_classes}")
        require(self.out_dim is None or self.out_dim >= 1, f"out_dim must be >= 1, got {self.out_dim}")
        require(self.embedding in EMBEDDINGS,
                f"unknown embedding {self.embedding!r}; valid: {', '.join(sorted(EMBEDDINGS))}")

    @property
    def output_dim(self) -> int:
        """The resolved output size (``out_dim`` or ``in_dim``)."""
        return self.in_dim if self.out_dim is None else self.out_dim


class MLPBlock(nn.Module):
    """Pre-norm residual block: h + Linear(SiLU(Linear(SiLU(Norm(h))) + W e))."""

    def __init__(self, hidden: int, emb_dim: int, layer_norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, hidden))
        self.fc2 = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Update ``h`` (B, hidden) given the conditioning ``emb`` (B, emb_dim)."""
        r = self.fc1(nn.functional.silu(self.norm(h))) + self.emb_proj(emb)
        return h + self.fc2(r)


class MLP(ClassConditioned, nn.Module):
    """Residual MLP: x (B, in_dim) or (B, *shape), noise input t (B,), labels (B,) or None.

    Image-like inputs are flattened and the output is reshaped back to the input
    shape when ``out_dim == in_dim``; otherwise the output is (B, out_dim). The output
    layer starts at zero, so a fresh network predicts 0.
    """

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        c = config
        self.cond_embed = Conditioning(c.embedding, c.emb_dim, c.emb_dim, c.num_classes)
        self.inp = nn.Linear(c.in_dim, c.hidden)
        self.blocks = nn.ModuleList(MLPBlock(c.hidden, c.emb_dim, c.layer_norm) for _ in range(c.depth))
        out_norm = nn.LayerNorm(c.hidden) if c.layer_norm else nn.Identity()
        self.out = nn.Sequential(out_norm, nn.SiLU(), nn.Linear(c.hidden, c.output_dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predict from ``x`` (B, *shape) at noise input ``t`` (B,) with labels ``cond``."""
        batch, shape = x.shape[0], x.shape[1:]
        if math.prod(shape) != self.config.in_dim:
            raise ValueError(f"MLP expects {self.config.in_dim} features per example, got shape {tuple(shape)}")
        h = self.inp(x.reshape(batch, -1))  # (B, *shape) -> (B, in_dim) -> (B, hidden)
        emb = self.cond_embed(t, self._parts(cond), batch)  # (B, emb_dim)
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(h)  # (B, hidden) -> (B, out_dim)
        if self.config.output_dim == self.config.in_dim:
            out = out.reshape(batch, *shape)  # (B, in_dim) -> (B, *shape)
        return out

    def _parts(self, cond) -> dict:
        """Named condition parts; only a label is taken (image conditions need a U-Net)."""
        parts = named_condition(cond)
        if "lowres" in parts:
            raise ValueError(f"{type(self).__name__} takes no image condition (use a U-Net)")
        return parts
