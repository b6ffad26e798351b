"""Molecules as point clouds with atom features: the zero-centre-of-mass subspace and its noise, atom
features, atom counts, and the field's metrics (bond orders from distances, stability, RDKit validity)."""
from .bonds import MARGINS_PM, bond_order, bond_orders
from .counts import AtomCountDistribution
from .features import QM9_HEAVY_TYPES, QM9_TYPES, AtomFeatures, atom_mask_of, mask_from_counts, split_molecules
from .stability import VALENCE, stability, stable_atoms
from .validity import evaluate_molecules, smiles_of, valid_smiles, validity_uniqueness_novelty
from .zero_com import (ZeroCoMNoise, centre_of_mass, project, remove_centre_of_mass, subspace_dimension,
                       subspace_gaussian_log_density)

__all__ = ["AtomCountDistribution", "AtomFeatures", "MARGINS_PM", "QM9_HEAVY_TYPES", "QM9_TYPES", "VALENCE",
           "ZeroCoMNoise", "atom_mask_of", "bond_order", "bond_orders", "centre_of_mass", "evaluate_molecules",
           "mask_from_counts", "project", "remove_centre_of_mass", "smiles_of", "split_molecules", "stability",
           "stable_atoms", "subspace_dimension", "subspace_gaussian_log_density", "valid_smiles",
           "validity_uniqueness_novelty"]
