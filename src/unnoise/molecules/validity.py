"""RDKit validity, uniqueness and novelty of generated molecules (the protocol of Hoogeboom et al. 2022).

A molecule (positions in Å, element symbols) becomes an RDKit molecule with the bonds of `bonds.py` (orders
1, 2, 3; no charges, no aromatic flags). It is valid when RDKit sanitizes it; its SMILES is then the canonical
SMILES of its largest fragment (by atom count); hydrogens that are atoms of the molecule stay in the
SMILES as [H], as in the reference, and RDKit adds implicit hydrogens to atoms below their valence.
Uniqueness: distinct SMILES / valid molecules. Novelty: unique SMILES absent from the training SMILES /
unique SMILES. RDKit is imported where used.
"""
from __future__ import annotations

import importlib
from typing import Iterable

from ..errors import UnnoiseError
from .bonds import bond_orders
from .stability import Molecule, stability


def rdkit_chem():
    """The `rdkit.Chem` module with RDKit's logging silenced; missing RDKit is a one-line error."""
    try:
        chem = importlib.import_module("rdkit.Chem")
        importlib.import_module("rdkit.RDLogger").DisableLog("rdApp.*")
    except ImportError:
        raise UnnoiseError("molecule validity needs RDKit; install it: pip install rdkit") from None
    return chem


def rdkit_molecule(positions, symbols: list[str]):
    """An unsanitized RDKit molecule with the distance-derived bonds of (positions, symbols)."""
    chem = rdkit_chem()
    bond_types = {1: chem.BondType.SINGLE, 2: chem.BondType.DOUBLE, 3: chem.BondType.TRIPLE}
    molecule = chem.RWMol()
    for symbol in symbols:
        molecule.AddAtom(chem.Atom(symbol))
    orders = bond_orders(positions, list(symbols))
    for i in range(len(symbols)):
        for j in range(i):
            if orders[i, j]:
                molecule.AddBond(i, j, bond_types[int(orders[i, j])])
    return molecule


def smiles_of(positions, symbols: list[str]) -> str | None:
    """Canonical SMILES of the largest fragment if RDKit sanitizes the molecule, else None (invalid)."""
    chem = rdkit_chem()
    molecule = rdkit_molecule(positions, symbols)
    try:
        chem.SanitizeMol(molecule)
    except Exception:  # RDKit raises its MolSanitizeException family (AtomValenceException, KekulizeException)
        return None
    fragments = chem.GetMolFrags(molecule, asMols=True, sanitizeFrags=False)
    largest = max(fragments, default=molecule, key=lambda fragment: fragment.GetNumAtoms())
    return chem.MolToSmiles(largest)


def valid_smiles(molecules: Iterable[Molecule]) -> list[str | None]:
    """SMILES (or None when invalid) of each molecule."""
    return [smiles_of(positions, list(symbols)) for positions, symbols in molecules]


def validity_uniqueness_novelty(smiles: list[str | None], training_smiles=None) -> dict:
    """Validity (valid / all), uniqueness (distinct / valid), novelty (unique not in training / unique;
    None without training SMILES), from per-molecule SMILES (None = invalid)."""
    if not smiles:
        raise UnnoiseError("validity: no molecules to evaluate")
    valid = [s for s in smiles if s is not None]
    unique = set(valid)
    result = {"validity": len(valid) / len(smiles), "uniqueness": len(unique) / len(valid) if valid else 0.0,
              "novelty": None, "valid": len(valid), "unique": len(unique)}
    if training_smiles is not None and unique:
        known = set(training_smiles)
        result["novelty"] = sum(s not in known for s in unique) / len(unique)
    return result


def evaluate_molecules(molecules: list[Molecule], training_smiles=None) -> dict:
    """All of the field's metrics on (positions, symbols) molecules: atom and molecule stability, validity,
    uniqueness, novelty (against `training_smiles`, an iterable of SMILES from `valid_smiles`), with counts."""
    return {**stability(molecules), **validity_uniqueness_novelty(valid_smiles(molecules), training_smiles)}
