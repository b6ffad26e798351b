"""Bond orders from interatomic distances: the protocol of EDM for molecules, stated as facts.

Facts (Hoogeboom et al. 2022, "Equivariant Diffusion for Molecule Generation in 3D", the QM9 evaluation of
their repository ehoogeboom/e3_diffusion_for_molecules, file qm9/bond_analyze.py; its lengths come from the
wiredchemist.com and chemistry-reference.com bond-length tables): typical bond lengths in picometres for
single, double and triple bonds between QM9's elements H, C, N, O, F, and margins of 10, 5 and 3 pm that the
reference tuned so that QM9's own molecules come out stable.

The rule (reference, get_bond_order), for atoms a, b at distance d (pm):
  no bond   unless d < single(a, b) + 10
  double    if a double length exists and d < double(a, b) + 5,
  triple    if, moreover, a triple length exists and d < triple(a, b) + 3,
  single    otherwise.
The comparisons are strict. Pairs absent from the single-bond table never bond.
"""
from __future__ import annotations

import numpy as np

MARGINS_PM = (10.0, 5.0, 3.0)  # single, double, triple
PICOMETRES_PER_ANGSTROM = 100.0

SINGLE_BOND_PM = {
    ("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92,
    ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135,
    ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136,
    ("O", "O"): 148, ("O", "F"): 142,
    ("F", "F"): 142,
}
DOUBLE_BOND_PM = {
    ("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120,
    ("N", "N"): 125, ("N", "O"): 121,
    ("O", "O"): 121,
}
TRIPLE_BOND_PM = {
    ("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113,
    ("N", "N"): 110,
}
BOND_TABLES_PM = (SINGLE_BOND_PM, DOUBLE_BOND_PM, TRIPLE_BOND_PM)


def bond_length_pm(table: dict, a: str, b: str) -> float | None:
    """The tabulated length of the a-b bond in picometres (either order), or None when absent."""
    length = table.get((a, b), table.get((b, a)))
    return None if length is None else float(length)


def bond_order(a: str, b: str, distance_angstrom: float) -> int:
    """Bond order 0..3 between elements a and b at a distance in Å, by the rule in the module docstring."""
    distance = PICOMETRES_PER_ANGSTROM * float(distance_angstrom)
    order = 0
    for bond, (table, margin) in enumerate(zip(BOND_TABLES_PM, MARGINS_PM), start=1):
        length = bond_length_pm(table, a, b)
        if length is None or not distance < length + margin:
            break
        order = bond
    return order


def threshold_matrices(symbols: list[str]) -> np.ndarray:
    """Thresholds (3, n, n) in pm: tabulated length + margin for single, double, triple; -inf when absent."""
    n = len(symbols)
    thresholds = np.full((3, n, n), -np.inf)
    for k, (table, margin) in enumerate(zip(BOND_TABLES_PM, MARGINS_PM)):
        for i in range(n):
            for j in range(n):
                length = bond_length_pm(table, symbols[i], symbols[j])
                if length is not None:
                    thresholds[k, i, j] = length + margin
    return thresholds


def bond_orders(positions: np.ndarray, symbols: list[str]) -> np.ndarray:
    """Symmetric bond-order matrix (n, n) of int, zero diagonal, for positions (n, 3) in Å.

    Vectorised form of `bond_order`: a pair's order is the number of leading thresholds (single, double,
    triple) its distance stays strictly below."""
    positions = np.asarray(positions, dtype=np.float64)
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)  # (n, n)
    below = PICOMETRES_PER_ANGSTROM * distances[None] < threshold_matrices(symbols)
    orders = np.cumprod(below, axis=0).sum(axis=0)  # (3, n, n) -> leading run of True
    np.fill_diagonal(orders, 0)
    return orders.astype(np.int64)
