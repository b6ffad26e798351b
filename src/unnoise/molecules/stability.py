"""Atom and molecule stability: an atom is stable when the orders of its bonds (from distances, see
`bonds.py`) sum to its element's valence; a molecule is stable when all its atoms are.

Valences (the reference's `allowed_bonds` for QM9's elements, Hoogeboom et al. 2022): H 1, C 4, N 3, O 2,
F 1. Charged atoms (e.g. N+ with 4 bonds) count as unstable, as in the reference.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import UnnoiseError
from .bonds import bond_orders

VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}

Molecule = tuple  # (positions (n, 3) array in Å, list of n element symbols)


def stable_atoms(positions: np.ndarray, symbols: list[str]) -> np.ndarray:
    """Bool (n,): whether each atom's bond-order sum equals its valence."""
    unknown = sorted({s for s in symbols if s not in VALENCE})
    if unknown:
        raise UnnoiseError(f"stability: no valence for element {unknown[0]!r}; known: {', '.join(VALENCE)}")
    valences = np.array([VALENCE[s] for s in symbols], dtype=np.int64)
    return bond_orders(positions, symbols).sum(axis=1) == valences


def stability(molecules: Iterable[Molecule]) -> dict:
    """Atom stability (stable atoms / atoms) and molecule stability (stable molecules / molecules), with
    the counts, over molecules given as (positions, symbols)."""
    atoms = stable = molecule_count = stable_molecules = 0
    for positions, symbols in molecules:
        flags = stable_atoms(positions, list(symbols))
        atoms += len(flags)
        stable += int(flags.sum())
        molecule_count += 1
        stable_molecules += int(flags.all())
    if molecule_count == 0:
        raise UnnoiseError("stability: no molecules to evaluate")
    return {"atom_stability": stable / max(atoms, 1), "molecule_stability": stable_molecules / molecule_count,
            "atoms": atoms, "stable_atoms": stable, "molecules": molecule_count,
            "stable_molecules": stable_molecules}
