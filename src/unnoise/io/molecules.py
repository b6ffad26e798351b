"""Molecule samples to files: SDF (V2000 molfiles with 3-D coordinates and the evaluator's bonds), XYZ,
and a picture: RDKit's 2-D depictions (when RDKit is installed) above 3-D views (principal-axes projection,
bonds from distances, atoms coloured by element); the atoms' x-y projection when the spec names no types.

A molecule sample is (N, 3 + F): coordinates in Å, then F features whose first len(spec.atom_types) columns
are the scaled one-hot atom types (molecules/features.py). Real atoms are the rows with any non-zero entry
(sampled padding rows are exactly zero, run/molecules.py); an atom's element is the argmax of its one-hot
block, as in the evaluation.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import UnnoiseError
from ..molecules.bonds import bond_orders
from .files import check_suffix, prepare_path, save_picture

MOLECULE_FORMATS = (".sdf", ".xyz", ".png", ".jpg", ".jpeg")
GRID_COLUMNS = 8
DEPICTION_SIZE = 200  # pixels per molecule in a depiction grid
MAX_DRAWN = 64  # a picture draws the first 64 molecules


def molecules_of(x: torch.Tensor, spec) -> list[tuple[np.ndarray, list[str]]]:
    """(positions (n, 3) float64 in Å, element symbols) of every molecule of a batch x (B, N, 3 + F)."""
    types = tuple(spec.atom_types)
    if not types:
        raise UnnoiseError("molecule samples: the data spec names no atom_types (a run config without its "
                           "resolved 'molecule' field)")
    if x.shape[-1] < 3 + len(types):
        raise UnnoiseError(f"molecule samples of {x.shape[-1]} columns cannot hold 3 coordinates and "
                           f"{len(types)} atom types")
    x = torch.as_tensor(x).detach().cpu().to(torch.float64)
    real = (x != 0).any(dim=-1)  # (B, N)
    kinds = x[..., 3: 3 + len(types)].argmax(dim=-1)  # (B, N)
    return [(row[mask, :3].numpy(), [types[int(k)] for k in row_kinds[mask]])
            for row, row_kinds, mask in zip(x, kinds, real)]


def molfile(positions: np.ndarray, symbols: Sequence[str], name: str) -> str:
    """One V2000 molfile (CTfile format): header, counts line, atom block, bond block with the
    distance-derived orders of molecules/bonds.py, "M  END"."""
    orders = bond_orders(positions, list(symbols))
    bonds = [(i + 1, j + 1, int(orders[i, j])) for i in range(len(symbols)) for j in range(i + 1, len(symbols))
             if orders[i, j]]
    if len(symbols) > 999 or len(bonds) > 999:
        raise UnnoiseError(f"{name}: a V2000 molfile holds at most 999 atoms and bonds")
    lines = [name, "  unnoise         3D", "", f"{len(symbols):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000"]
    lines += [f"{x:10.4f}{y:10.4f}{z:10.4f} {s:<3} 0  0  0  0  0  0  0  0  0  0  0  0"
              for (x, y, z), s in zip(positions.tolist(), symbols)]
    lines += [f"{i:3d}{j:3d}{order:3d}  0" for i, j, order in bonds]
    return "\n".join(lines + ["M  END"]) + "\n"


def sdf_text(molecules, names: Sequence[str]) -> str:
    """Molecules as one SD file: a molfile per molecule, each followed by "$$$$"."""
    return "".join(molfile(p, s, name) + "$$$$\n" for (p, s), name in zip(molecules, names))


def xyz_text(molecules, names: Sequence[str]) -> str:
    """Molecules as concatenated XYZ blocks: atom count, a comment line (the name), "El x y z" per atom."""
    blocks = []
    for (positions, symbols), name in zip(molecules, names):
        rows = [f"{s:<2} {x:12.6f} {y:12.6f} {z:12.6f}" for (x, y, z), s in zip(positions.tolist(), symbols)]
        blocks.append("\n".join([str(len(symbols)), name, *rows]) + "\n")
    return "".join(blocks)


def depiction_grid(molecules):
    """RDKit's 2-D depictions of molecules in a grid (a Pillow image); bonds from distances, drawn whether
    or not the molecule sanitizes."""
    from rdkit.Chem import AllChem, Draw

    from ..molecules.validity import rdkit_molecule

    drawn = []
    for positions, symbols in molecules:
        molecule = rdkit_molecule(positions, symbols).GetMol()
        molecule.UpdatePropertyCache(strict=False)
        AllChem.Compute2DCoords(molecule)
        drawn.append(molecule)
    return Draw.MolsToGridImage(drawn, molsPerRow=GRID_COLUMNS, subImgSize=(DEPICTION_SIZE, DEPICTION_SIZE))


ELEMENT_COLOURS = {"H": (200, 200, 200), "C": (60, 60, 60), "N": (40, 80, 220), "O": (220, 40, 40),
                   "F": (40, 170, 60)}
VIEW_SIZE = 200  # pixels per molecule in a grid of 3-D views


def view_image(positions: np.ndarray, symbols: Sequence[str], size: int = VIEW_SIZE):
    """A 3-D view of one molecule (a Pillow image): the positions turned to their principal axes (the
    widest spread left-right, the second up-down, the third towards the viewer), bonds of molecules/bonds.py
    as lines (one per order), atoms as discs coloured by element, far atoms drawn first."""
    from .files import pillow_draw, pillow_image

    picture = pillow_image().new("RGB", (size, size), (255, 255, 255))
    if len(symbols) == 0:
        return picture
    centred = positions - positions.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=True)[2] if len(symbols) > 1 else np.eye(3)
    view = centred @ axes.T  # (n, 3): x, y in the picture, z towards the viewer
    scale = 0.4 * size / max(float(np.abs(view[:, :2]).max()), 1.0)
    points = [(size / 2 + scale * x, size / 2 - scale * y) for x, y in view[:, :2].tolist()]
    draw, orders = pillow_draw().Draw(picture), bond_orders(positions, list(symbols))
    for i, j in zip(*np.nonzero(np.triu(orders))):
        draw.line([points[i], points[j]], fill=(120, 120, 120), width=2 * int(orders[i, j]))
    radius = max(3, size // 40)
    for k in np.argsort(view[:, 2]):
        x, y = points[k]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(0, 0, 0),
                     fill=ELEMENT_COLOURS.get(symbols[k], (150, 0, 150)))
    return picture


def view_grid(molecules):
    """3-D views of molecules in a grid of GRID_COLUMNS (a Pillow image)."""
    from .files import pillow_image, tile_arrays

    tiles = [np.asarray(view_image(positions, symbols)) for positions, symbols in molecules]
    return pillow_image().fromarray(tile_arrays(tiles, columns=min(GRID_COLUMNS, len(tiles))))


def molecule_picture(molecules):
    """RDKit's 2-D depictions above the 3-D views (only the views without RDKit)."""
    from .files import pillow_image

    views = view_grid(molecules)
    if importlib.util.find_spec("rdkit") is None:
        return views
    depictions = depiction_grid(molecules).convert("RGB")
    width = max(depictions.width, views.width)
    picture = pillow_image().new("RGB", (width, depictions.height + views.height), (255, 255, 255))
    picture.paste(depictions, (0, 0))
    picture.paste(views, (0, depictions.height))
    return picture


def _write_text(path: Path, text: str) -> Path:
    path = prepare_path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)  # whole or not at all
    return path


def write_molecule_samples(x: torch.Tensor, spec, path: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Write molecule samples x (B, N, 3 + F): .sdf, .xyz, or a picture (.png/.jpg) of the first 64."""
    suffix = check_suffix(path, MOLECULE_FORMATS, "molecule samples")
    if suffix not in (".sdf", ".xyz") and not spec.atom_types:  # no elements known: the atoms' x-y projection
        from .points import write_points_samples

        return write_points_samples(x[:MAX_DRAWN], spec, path)
    molecules = molecules_of(x, spec)
    names = [f"sample {i}" for i in range(len(molecules))] if names is None else list(names)
    if suffix == ".sdf":
        return [_write_text(Path(path), sdf_text(molecules, names))]
    if suffix == ".xyz":
        return [_write_text(Path(path), xyz_text(molecules, names))]
    return [save_picture(molecule_picture(molecules[:MAX_DRAWN]), path)]
