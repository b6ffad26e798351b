"""Atom types (and charges) as scaled one-hot features, and the molecule tensor layout.

One molecule is a tensor (N, 3 + F): per atom its 3 coordinates in Å, then F features: the one-hot atom
type times `type_scale`, then (with charges) the atomic number times `charge_scale`. Padding rows are zero,
so the mask of a clean molecule is "some type entry is non-zero". The default scales 0.25 and 0.1 are the
reference's normalisation ([1, 4, 10] for positions, one-hot, charges; Hoogeboom et al. 2022, App. B).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import UnnoiseError
from .zero_com import POSITION_DIMS

ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
QM9_TYPES = ("H", "C", "N", "O", "F")
QM9_HEAVY_TYPES = ("C", "N", "O", "F")


@dataclass(frozen=True)
class AtomFeatures:
    """How atom types become features: `types` in one-hot order, the one-hot scale, and whether a scaled
    atomic-number ("charge") column follows the one-hot block."""

    types: tuple = QM9_TYPES
    type_scale: float = 0.25
    charges: bool = True
    charge_scale: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(str(t) for t in self.types))
        unknown = [t for t in self.types if t not in ATOMIC_NUMBERS]
        if unknown or not self.types:
            raise UnnoiseError(f"atom features: unknown atom type {unknown[:1]}; valid: {', '.join(ATOMIC_NUMBERS)}")
        if not self.type_scale > 0 or not self.charge_scale > 0:
            raise UnnoiseError(f"atom features: scales must be > 0, got {self.type_scale}, {self.charge_scale}")

    @property
    def num_features(self) -> int:
        """F: one-hot columns plus the charge column."""
        return len(self.types) + int(self.charges)

    def encode(self, type_indices: Tensor) -> Tensor:
        """Features (N, F) of atoms with type indices (N,) into `types`."""
        one_hot = torch.nn.functional.one_hot(type_indices.long(), len(self.types)).to(torch.float64)
        columns = [one_hot * self.type_scale]
        if self.charges:
            numbers = torch.tensor([ATOMIC_NUMBERS[t] for t in self.types], dtype=torch.float64)
            columns.append((numbers[type_indices.long()] * self.charge_scale).unsqueeze(-1))
        return torch.cat(columns, dim=-1)

    def type_indices(self, symbols) -> Tensor:
        """Type indices (N,) of element symbols; an element outside `types` is a one-line error."""
        index = {t: i for i, t in enumerate(self.types)}
        missing = sorted({s for s in symbols if s not in index})
        if missing:
            raise UnnoiseError(f"atom features: element {missing[0]!r} not in types {', '.join(self.types)}")
        return torch.tensor([index[s] for s in symbols], dtype=torch.long)

    def decode_types(self, features: Tensor) -> Tensor:
        """Type index per atom (..., N): argmax of the one-hot block of features (..., N, F)."""
        return features[..., : len(self.types)].argmax(dim=-1)


def molecule_tensor(positions: Tensor, type_indices: Tensor, atom_features: AtomFeatures, max_atoms: int) -> Tensor:
    """One molecule padded to `max_atoms` rows: positions (n, 3), types (n,) -> (max_atoms, 3 + F)."""
    n = positions.shape[0]
    if n > max_atoms:
        raise UnnoiseError(f"molecule of {n} atoms exceeds max_atoms={max_atoms}")
    rows = torch.cat([positions.to(torch.float64), atom_features.encode(type_indices)], dim=-1)
    return torch.nn.functional.pad(rows, (0, 0, 0, max_atoms - n))


def atom_mask_of(x0: Tensor, atom_features: AtomFeatures) -> Tensor:
    """Mask (..., N) of the real atoms of clean molecules x0 (..., N, 3 + F): rows with a type entry."""
    one_hot = x0[..., POSITION_DIMS: POSITION_DIMS + len(atom_features.types)]
    return one_hot.abs().amax(dim=-1) > 0


def mask_from_counts(counts: Tensor, max_atoms: int) -> Tensor:
    """Mask (B, max_atoms) with the first counts[b] atoms of molecule b real."""
    return torch.arange(max_atoms, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)


def split_molecules(x: Tensor, mask: Tensor, atom_features: AtomFeatures) -> list[tuple[np.ndarray, list[str]]]:
    """The real atoms of each molecule of x (B, N, 3 + F) as (positions (n, 3) float64 array, symbols)."""
    types = atom_features.decode_types(x[..., POSITION_DIMS:])
    molecules = []
    for row, row_types, row_mask in zip(x.detach().cpu(), types.cpu(), mask.cpu()):
        positions = row[row_mask, :POSITION_DIMS].to(torch.float64).numpy()
        molecules.append((positions, [atom_features.types[int(t)] for t in row_types[row_mask]]))
    return molecules


ATOM_MASK = "atom_mask"  # the condition part holding a batch's atom mask (B, N)


def atom_mask_from(cond, x: Tensor) -> Tensor:
    """The atom mask (B, N) a denoiser of molecules x (B, N, 3 + F) receives as `cond["atom_mask"]`;
    every atom is real when cond is None or has no mask."""
    mask = cond.get(ATOM_MASK) if isinstance(cond, dict) else None
    if cond is not None and not isinstance(cond, dict):
        raise ValueError(f"a molecule condition is a dict with {ATOM_MASK!r}, got {type(cond).__name__}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"atom mask of shape {tuple(mask.shape)} for molecules of shape {tuple(x.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)
