"""A non-equivariant baseline denoiser network for molecules: a transformer over atoms on raw coordinates.

Input and output follow nn/egnn.py: x (B, N, 3 + F) (3 coordinates, then F features), the noise input t
(B,), the condition {"atom_mask": (B, N)}. Each real atom is one token: its centred coordinates and features
through a linear layer, plus the noise embedding; self-attention sees the real atoms only (padding keys are
masked). The output's coordinates are moved to zero centre of mass over the real atoms (so samples stay in
the subspace the sampler's noise lives in) and padding rows are zero. It commutes with atom permutations
and translations but not with rotations: the baseline against which the EGNN's equivariance is measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..molecules.features import atom_mask_from
from ..molecules.zero_com import POSITION_DIMS, remove_centre_of_mass
from .config import require
from .embedding import SinusoidalEmbedding


@dataclass(frozen=True)
class AtomTransformerConfig:
    """Hyper-parameters of :class:`AtomTransformer`: ``num_features`` F per atom, ``width`` channels,
    ``depth`` pre-norm encoder layers of ``heads`` attention heads, ``emb_dim`` of the noise embedding."""

    num_features: int
    width: int = 64
    depth: int = 4
    heads: int = 4
    emb_dim: int = 32

    def __post_init__(self) -> None:
        require(self.num_features >= 1, f"num_features must be >= 1, got {self.num_features}")
        require(self.width >= 1 and self.heads >= 1 and self.width % self.heads == 0,
                f"width ({self.width}) must be a positive multiple of heads ({self.heads})")
        require(self.depth >= 1, f"depth must be >= 1, got {self.depth}")
        require(self.emb_dim >= 2, f"emb_dim must be >= 2, got {self.emb_dim}")


class AtomTransformer(nn.Module):
    """``forward(x (B, N, 3 + F), t (B,), cond)`` -> (B, N, 3 + F); see the module docstring."""

    def __init__(self, config: AtomTransformerConfig):
        super().__init__()
        self.config = c = config
        self.time_embed = nn.Sequential(SinusoidalEmbedding(c.emb_dim), nn.Linear(c.emb_dim, c.width), nn.SiLU())
        self.embed = nn.Linear(POSITION_DIMS + c.num_features, c.width)
        layer = nn.TransformerEncoderLayer(c.width, c.heads, dim_feedforward=2 * c.width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.width)
        self.out = nn.Linear(c.width, POSITION_DIMS + c.num_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != POSITION_DIMS + self.config.num_features:
            raise ValueError(f"AtomTransformer expects (B, N, {POSITION_DIMS + self.config.num_features}), "
                             f"got {tuple(x.shape)}")
        mask = atom_mask_from(cond, x)
        node = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
        centred = torch.cat([remove_centre_of_mass(x[..., :POSITION_DIMS], mask), x[..., POSITION_DIMS:] * node], -1)
        h = self.embed(centred) + self.time_embed(t.reshape(-1)).to(x.dtype).unsqueeze(1)  # (B, N, W)
        h = self.encoder(h, src_key_padding_mask=~mask)
        out = self.out(self.norm(h)) * node  # (B, N, 3 + F)
        return torch.cat([remove_centre_of_mass(out[..., :POSITION_DIMS], mask), out[..., POSITION_DIMS:]], -1)
