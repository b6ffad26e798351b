"""The denoising objective for molecules: noise drawn in the zero-centre-of-mass subspace of each molecule's
real atoms, and the atom mask handed to the network.

A training batch holds padded molecules x0 (B, N, 3 + F) at zero centre of mass (data/qm9.py); a molecule's
mask is its rows with a non-zero atom type (molecules.features.atom_mask_of). The noise is an isotropic
Gaussian projected onto the subspace, eps = P z (Hoogeboom et al. 2022, Sec. 3.1 and Alg. 1), so x_t =
alpha x0 + s eps stays in the subspace and padding rows stay exactly zero; the network (nn/egnn.py) outputs
zero on padding rows, so padding contributes nothing to the loss. The per-molecule loss is the squared error
over all N (3 + F) entries divided by that padded size: EDM for molecules' L2 normalisation.
"""
from __future__ import annotations

import torch

from ..molecules.features import ATOM_MASK, AtomFeatures, atom_mask_of
from ..molecules.zero_com import project
from .denoising import DenoisingObjective


def with_atom_mask(cond: dict | None, mask: torch.Tensor) -> dict:
    """The condition dict `cond` (None: no other parts) with the atom mask (B, N) added."""
    return {**(cond or {}), ATOM_MASK: mask}


class MoleculeObjective(DenoisingObjective):
    """DenoisingObjective whose noise lies in each molecule's zero-CoM subspace (padding rows zero) and
    whose condition carries the atom mask; `atom_features` tells real atoms from padding."""

    def __init__(self, denoiser, conditions, train, atom_features: AtomFeatures):
        super().__init__(denoiser, conditions, train, 0)
        self.atom_features = atom_features

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        rows = super().draw(batch, generator)
        mask = atom_mask_of(rows["x0"], self.atom_features)  # (B, N)
        return {**rows, "noise": project(rows["noise"], mask), "cond": with_atom_mask(rows["cond"], mask)}

    def describe(self, rows: dict) -> str:
        atoms = rows["cond"][ATOM_MASK].sum(dim=1)
        return f"{super().describe(rows)}, {int(atoms.min())}..{int(atoms.max())} atoms per molecule"
