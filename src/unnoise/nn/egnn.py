"""E(n)-equivariant graph network (EGNN, Satorras et al. 2021) as a denoiser network for molecules.

Input x (B, N, 3 + F): per atom 3 coordinates, then F invariant features; the noise input t (B,); the
condition {"atom_mask": (B, N) bool} marks the real atoms (all real when absent); with `properties` P > 0
the condition also holds "property" (B, P + 1) (conditions/properties.py), an invariant context joined to
the noise embedding that enters every atom's features. Every atom exchanges messages with every other real
atom (a fully connected graph, as in EDM for molecules). One layer, for real atoms i, j != i, with
d_ij = ||x_i - x_j||^2 and a_ij the squared distance in the input:
  m_ij = phi_e(h_i, h_j, d_ij, a_ij)                                    (3)
  x_i' = x_i + C sum_j (x_i - x_j) / (sqrt(d_ij) + 1) phi_x(m_ij)       (4), normalised as in EDM (App. B)
  m_i  = C sum_j e_ij m_ij,   e_ij = sigmoid(phi_inf(m_ij)) or 1         (5), edge attention of Sec. 3.3
  h_i' = h_i + phi_h(h_i, m_i)                                           (6), residual
with C = 1 / (number of real neighbours). Coordinates transform with rotations, reflections and translations;
features are invariant; all of it commutes with permutations of the atoms. Padding atoms send no messages,
and their outputs are zero.

The output has x's layout: coordinates x_L - x_0 moved to zero centre of mass over the real atoms (an eps
prediction in the zero-CoM subspace, Hoogeboom et al. 2022), then F feature outputs; padding rows are zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..molecules.features import atom_mask_from
from ..molecules.zero_com import POSITION_DIMS, remove_centre_of_mass
from .config import require
from .embedding import SinusoidalEmbedding

DISTANCE_EPS = 1e-8  # keeps sqrt differentiable on the diagonal (d_ii = 0), where the edge mask is 0


@dataclass(frozen=True)
class EGNNConfig:
    """Hyper-parameters of :class:`EGNN`: ``num_features`` F per atom, ``hidden`` channels, ``depth``
    layers, ``emb_dim`` of the noise embedding, ``attention`` on the edges (Sec. 3.3)."""

    num_features: int
    hidden: int = 128
    depth: int = 4
    emb_dim: int = 32
    attention: bool = True
    properties: int = 0  # P > 0: cond["property"] (B, P + 1) joins every atom's features (conditions/properties.py)

    def __post_init__(self) -> None:
        require(self.num_features >= 1, f"num_features must be >= 1, got {self.num_features}")
        require(self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}")
        require(self.depth >= 1, f"depth must be >= 1, got {self.depth}")
        require(self.emb_dim >= 2, f"emb_dim must be >= 2, got {self.emb_dim}")
        require(self.properties >= 0, f"properties must be >= 0, got {self.properties}")


def _mlp(inputs: int, hidden: int, outputs: int, last_activation: bool = False) -> nn.Sequential:
    layers = [nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, outputs)]
    return nn.Sequential(*layers, nn.SiLU()) if last_activation else nn.Sequential(*layers)


class EquivariantLayer(nn.Module):
    """One E(n)-equivariant graph convolution layer, eqs. (3)-(6)."""

    def __init__(self, hidden: int, attention: bool):
        super().__init__()
        self.phi_e = _mlp(2 * hidden + 2, hidden, hidden, last_activation=True)
        self.phi_inf = nn.Linear(hidden, 1) if attention else None
        self.phi_x = _mlp(hidden, hidden, 1)
        nn.init.normal_(self.phi_x[-1].weight, std=1e-3)  # small coordinate steps at initialisation
        nn.init.zeros_(self.phi_x[-1].bias)
        self.phi_h = _mlp(2 * hidden, hidden, hidden)

    def edge_messages(self, h: Tensor, d: Tensor, a: Tensor) -> Tensor:
        """m_ij = phi_e(h_i, h_j, d_ij, a_ij) (B, N, N, H), eq. (3). phi_e's first linear layer acts on the
        concatenation [h_i, h_j, d_ij, a_ij]; it is applied as W_i h_i + W_j h_j + w_d d_ij + w_a a_ij + b,
        the same map, so the (B, N, N, 2H + 2) concatenation is never built."""
        first, hidden = self.phi_e[0], h.shape[-1]
        w = first.weight  # (H, 2H + 2): columns for h_i, h_j, d, a
        own, other = h @ w[:, :hidden].T, h @ w[:, hidden: 2 * hidden].T  # (B, N, H) each
        pre = own.unsqueeze(2) + other.unsqueeze(1) + d * w[:, 2 * hidden] + a * w[:, 2 * hidden + 1] + first.bias
        return self.phi_e[1:](pre)

    def forward(self, h: Tensor, x: Tensor, a: Tensor, edges: Tensor, node: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, N, H), x (B, N, 3), a (B, N, N, 1), edge mask (B, N, N, 1), node mask (B, N, 1)."""
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # (B, N, N, 3): x_i - x_j
        d = (diff**2).sum(dim=-1, keepdim=True)  # (B, N, N, 1)
        m = self.edge_messages(h, d, a)  # (B, N, N, H), eq. (3)
        if self.phi_inf is not None:
            m = m * torch.sigmoid(self.phi_inf(m))  # e_ij m_ij
        m = m * edges
        c = 1.0 / edges.sum(dim=2).clamp(min=1)  # (B, N, 1): 1 / real neighbours
        step = (diff / ((d + DISTANCE_EPS).sqrt() + 1) * self.phi_x(m) * edges).sum(dim=2)  # (B, N, 3)
        x = x + c * step * node  # eq. (4)
        h = h + self.phi_h(torch.cat([h, c * m.sum(dim=2)], dim=-1))  # eqs. (5), (6)
        return h * node, x


class EGNN(nn.Module):
    """EGNN denoiser network: ``forward(x (B, N, 3 + F), t (B,), cond)`` -> (B, N, 3 + F), see the module
    docstring. A fresh network predicts almost zero coordinates and zero features."""

    def __init__(self, config: EGNNConfig):
        super().__init__()
        self.config = c = config
        self.time_embed = nn.Sequential(SinusoidalEmbedding(c.emb_dim), nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU())
        context = c.properties + 1 if c.properties else 0  # normalised values + presence flag
        self.embed = nn.Linear(c.num_features + c.emb_dim + context, c.hidden)
        self.layers = nn.ModuleList(EquivariantLayer(c.hidden, c.attention) for _ in range(c.depth))
        self.out = nn.Linear(c.hidden, c.num_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != POSITION_DIMS + self.config.num_features:
            raise ValueError(f"EGNN expects (B, N, {POSITION_DIMS + self.config.num_features}), got {tuple(x.shape)}")
        mask = atom_mask_from(cond, x)
        node = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
        edges = node.unsqueeze(2) * node.unsqueeze(1)  # (B, N, N, 1)
        edges = edges * (1 - torch.eye(x.shape[1], dtype=x.dtype, device=x.device)).unsqueeze(-1)
        x0 = remove_centre_of_mass(x[..., :POSITION_DIMS], mask)  # the network sees centred, masked positions
        emb = self.time_embed(t.reshape(-1)).to(x.dtype)  # (B, E)
        if self.config.properties:  # invariant context: the properties join the time embedding
            emb = torch.cat([emb, self.property_part(cond, x)], dim=-1)  # (B, E + P + 1)
        h = self.embed(torch.cat([x[..., POSITION_DIMS:] * node, emb.unsqueeze(1).expand(-1, x.shape[1], -1)], -1))
        h = h * node
        a = ((x0.unsqueeze(2) - x0.unsqueeze(1)) ** 2).sum(dim=-1, keepdim=True)  # (B, N, N, 1)
        positions = x0
        for layer in self.layers:
            h, positions = layer(h, positions, a, edges, node)
        eps_positions = remove_centre_of_mass(positions - x0, mask)
        return torch.cat([eps_positions, self.out(h) * node], dim=-1)

    def property_part(self, cond, x: Tensor) -> Tensor:
        """cond["property"] (B, P + 1) checked against the configured P."""
        part = cond.get("property") if isinstance(cond, dict) else None
        expected = (x.shape[0], self.config.properties + 1)
        if part is None or tuple(part.shape) != expected:
            got = "none" if part is None else tuple(part.shape)
            raise ValueError(f"EGNN with properties={self.config.properties} needs cond['property'] of shape "
                             f"{expected}, got {got}")
        return part.to(device=x.device, dtype=x.dtype)
