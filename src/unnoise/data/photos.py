"""Random crops of the real photographs shipped inside the scikit-image wheel (no download).

Only `skimage.data` images stored in the wheel itself are used; the ones it fetches on demand are
not. The split is by source photograph, so test crops come from photographs never trained on:
"train" crops come from TRAIN_PHOTOS, "test" from TEST_PHOTOS, "all" from both.

Crop i depends only on (seed, split, i): a photograph (chosen in proportion to its area), a zoom
(the crop window is size / zoom source pixels wide, zoom log-uniform in [min_zoom, 1]), a position
and a horizontal flip; the window is resized to size x size with antialiasing.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from unnoise.data.base import ArrayDataset, choice, import_extra, positive_int, seed_int, size_of
from unnoise.errors import UnnoiseError

TRAIN_PHOTOS = ("astronaut", "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina")
TEST_PHOTOS = ("chelsea", "coffee")
SPLITS = ("train", "test", "all")
SPLIT_STREAM = {"train": 0, "test": 1, "all": 2}
SIZES = (32, 64, 128)
MIN_ZOOM = 0.25


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> torch.Tensor:
    """The photograph `name` of skimage.data as (3, H, W) float32 in [-1, 1]."""
    if name not in TRAIN_PHOTOS + TEST_PHOTOS:
        raise UnnoiseError(f"photos: unknown photograph {name!r}; valid: {', '.join(TRAIN_PHOTOS + TEST_PHOTOS)}")
    data = import_extra("skimage.data", "dataset 'photos'", "scikit-image")
    image = getattr(data, name)()
    image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
    pixels = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    return pixels.float() / 127.5 - 1.0


def photo_names(split: str) -> tuple[str, ...]:
    """The source photographs of a split."""
    return {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS, "all": TRAIN_PHOTOS + TEST_PHOTOS}[split]


def _crop_plan(indices, names, sizes, size: int, min_zoom: float, split: str, seed: int) -> list[tuple]:
    """(photo, top, left, window, flip) per index, from its own random stream."""
    areas = np.array([h * w for h, w in sizes], dtype=np.float64)
    plan = []
    for index in indices:
        rng = np.random.default_rng([seed, SPLIT_STREAM[split], int(index)])
        photo = int(rng.choice(len(names), p=areas / areas.sum()))
        height, width = sizes[photo]
        zoom = float(np.exp(rng.uniform(np.log(min_zoom), 0.0)))
        window = min(int(round(size / zoom)), height, width)
        top, left = int(rng.integers(0, height - window + 1)), int(rng.integers(0, width - window + 1))
        plan.append((photo, top, left, window, bool(rng.random() < 0.5)))
    return plan


def crop_photos(indices, size: int = 64, split: str = "train", seed: int = 0,
                min_zoom: float = MIN_ZOOM) -> tuple[torch.Tensor, list[str]]:
    """Crops (N, 3, size, size) in [-1, 1] at `indices`, and the source photograph of each."""
    names = photo_names(split)
    photos = [load_photo(name) for name in names]
    plan = _crop_plan(indices, names, [p.shape[1:] for p in photos], size, min_zoom, split, seed)
    crops = torch.empty(len(plan), 3, size, size)
    for row, (photo, top, left, window, flip) in enumerate(plan):
        patch = photos[photo][:, top:top + window, left:left + window].unsqueeze(0)
        if window != size:
            patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=window > size)
        crops[row] = patch[0].flip(-1) if flip else patch[0]
    return crops.clamp(-1.0, 1.0), [names[p[0]] for p in plan]


def _options(size, n, split, seed, min_zoom) -> tuple[int, int, str, int, float]:
    """Validate the loader's options; each error is one line naming the option."""
    size, n = size_of(size, "photos size", SIZES), positive_int(n, "photos n")
    split = choice(split, "photos split", SPLITS)
    seed = seed_int(seed, "photos seed")
    try:
        min_zoom = float(min_zoom)
    except (TypeError, ValueError):
        min_zoom = float("nan")
    if not 0.05 <= min_zoom <= 1.0:
        raise UnnoiseError(f"photos min_zoom must be in [0.05, 1], got {min_zoom!r}")
    return size, n, split, seed, min_zoom


def load_photos(size: int = 64, n: int = 2000, split: str = "train", seed: int = 0,
                min_zoom: float = MIN_ZOOM) -> ArrayDataset:
    """`n` random (3, size, size) crops of real photographs (size 32, 64 or 128); "train" and
    "test" crop disjoint photographs. Adds `sources`, the photograph of each crop."""
    size, n, split, seed, min_zoom = _options(size, n, split, seed, min_zoom)
    crops, sources = crop_photos(range(n), size, split, seed, min_zoom)
    dataset = ArrayDataset(crops, name="photos", modality="image")
    dataset.sources = sources
    dataset.levels = 0
    return dataset
