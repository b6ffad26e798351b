"""Datasets by name: `load_dataset("digits")`, `load_dataset("toy2d", kind="ring")`, ...

Every loader returns an `ArrayDataset` whose `x` is float32 scaled to about [-1, 1].
"""
from __future__ import annotations

import inspect
from typing import Callable

from unnoise.data.audiofolder import load_audiofolder
from unnoise.data.base import ArrayDataset
from unnoise.data.digits import load_digits
from unnoise.data.imagefolder import load_imagefolder
from unnoise.data.landscapes import load_landscapes
from unnoise.data.photos import load_photos
from unnoise.data.qm9 import load_qm9
from unnoise.data.shakespeare_works import load_shakespeare
from unnoise.data.shapes import load_shapes
from unnoise.data.textfolder import load_textfolder
from unnoise.data.tones import load_tones
from unnoise.data.toy2d import load_toy2d, ring_centers
from unnoise.errors import UnnoiseError, unknown_name
from unnoise.planning.dataset import load_maze  # trajectory windows in the D4RL mazes (planning/)

DATASETS: dict[str, Callable[..., ArrayDataset]] = {
    "digits": load_digits,
    "toy2d": load_toy2d,
    "imagefolder": load_imagefolder,
    "shapes": load_shapes,
    "tones": load_tones,
    "audiofolder": load_audiofolder,
    "landscapes": load_landscapes,
    "photos": load_photos,
    "shakespeare": load_shakespeare,
    "textfolder": load_textfolder,
    "qm9": load_qm9,
    "maze": load_maze,
}


def dataset_options(name: str) -> dict[str, object]:
    """The options a dataset accepts, with their defaults (inspect.Parameter.empty if required)."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    parameters = inspect.signature(DATASETS[name]).parameters
    return {option: parameter.default for option, parameter in parameters.items()}


def load_dataset(name: str, **options) -> ArrayDataset:
    """Load the dataset registered as `name`, passing `options` to its loader."""
    valid = dataset_options(name)
    for option in options:
        if option not in valid:
            choices = ", ".join(valid) or "(none)"
            raise UnnoiseError(f"dataset {name!r}: unknown option {option!r}; valid: {choices}")
    return DATASETS[name](**options)


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "dataset_options",
    "load_dataset",
    "load_audiofolder",
    "load_digits",
    "load_imagefolder",
    "load_landscapes",
    "load_photos",
    "load_qm9",
    "load_shapes",
    "load_tones",
    "load_toy2d",
    "ring_centers",
]
