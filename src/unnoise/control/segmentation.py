"""Segmentation maps as control images: class maps (B, H, W) drawn in a fixed palette (B, 3, H, W) in
[0, 1], and read back by the nearest palette colour; the exact maps of the landscapes renderer, the
colour classes of the shapes renders; mean IoU between class maps.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UnnoiseError

# the SEGMENT_CLASSES of data/landscapes.py: sky, sun_moon, cloud, mountain, snow, water, trees, ground
LANDSCAPE_PALETTE = (
    (0.27, 0.51, 0.86), (1.00, 0.86, 0.00), (0.86, 0.86, 0.86), (0.47, 0.31, 0.24),
    (1.00, 1.00, 1.00), (0.00, 0.16, 0.63), (0.00, 0.47, 0.08), (0.63, 0.78, 0.24),
)
SHAPES_PALETTE = ((0.0, 0.0, 0.0),) + (  # background, then the shapes' colours (data/shapes.py COLOURS)
    (0.95, 0.15, 0.15), (0.15, 0.80, 0.20), (0.15, 0.25, 1.00), (0.95, 0.85, 0.10), (0.90, 0.20, 0.90),
    (0.10, 0.90, 0.90),
)
PALETTES = {"landscapes": LANDSCAPE_PALETTE, "shapes": SHAPES_PALETTE}
FOREGROUND = 0.3  # shapes: brightest channel (in [0, 1]) above which a pixel belongs to an object


def palette_of(dataset_name: str) -> Tensor:
    """(K, 3) colours of the classes of a dataset with segmentation maps."""
    if dataset_name not in PALETTES:
        raise UnnoiseError(f"segmentation controls need a dataset with class maps ({', '.join(PALETTES)}), "
                           f"got {dataset_name!r}")
    return torch.tensor(PALETTES[dataset_name], dtype=torch.float32)


def colour_map(classes: Tensor, palette: Tensor) -> Tensor:
    """(B, H, W) class indices -> (B, 3, H, W) palette colours in [0, 1]."""
    return palette.to(classes.device)[classes.long()].permute(0, 3, 1, 2)


def read_classes(colours: Tensor, palette: Tensor) -> Tensor:
    """(B, 3, H, W) colours in [0, 1] -> (B, H, W) index of the nearest palette colour."""
    distance = (colours.float().unsqueeze(1) - palette.to(colours.device).view(1, -1, 3, 1, 1)).square().sum(2)
    return distance.argmin(1)  # (B, K, H, W) -> (B, H, W)


def shapes_classes(images: Tensor) -> Tensor:
    """Class maps (B, H, W) of shapes images (B, 3, H, W) in [-1, 1]: 0 for background, else 1 + the
    palette colour nearest in hue (cosine) to the pixel."""
    pixels = (images.float() + 1) / 2
    palette = torch.tensor(SHAPES_PALETTE[1:], dtype=torch.float32, device=images.device)
    similarity = torch.nn.functional.cosine_similarity(pixels.unsqueeze(1), palette.view(1, -1, 3, 1, 1), dim=2)
    foreground = pixels.amax(1) > FOREGROUND
    return torch.where(foreground, similarity.argmax(1) + 1, torch.zeros_like(foreground, dtype=torch.long))


def majority(classes: Tensor, count: int) -> Tensor:
    """3x3 mode filter of (B, H, W) class maps (borders replicated, ties to the lower class): isolated
    speckles of a generated image take their neighbours' class."""
    votes = torch.nn.functional.one_hot(classes.long(), count).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    padded = torch.nn.functional.pad(votes, (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, 3, stride=1).argmax(1)


def dataset_classes(images: Tensor, index: Tensor | None, dataset) -> Tensor:
    """The class maps (B, H, W) of training rows: the landscapes renderer's exact maps (`index` into
    `dataset.segmentation`), or the shapes renders' colour classes read from `images`."""
    name = getattr(dataset, "name", "")
    if getattr(dataset, "segmentation", None) is not None and index is not None:
        return dataset.segmentation[index.cpu()].long().to(images.device)
    if name == "shapes":
        return shapes_classes(images)
    raise UnnoiseError(f"model.control_kind=segmentation needs landscapes or shapes data, got {name or 'none'!r}")


def analyzed_classes(images: Tensor, dataset_name: str) -> Tensor:
    """Class maps (B, H, W) of generated images (B, 3, H, W) in [-1, 1], read without a learned model: the
    landscape analyzer's segmentation, or the shapes colour classes after a 3x3 mode filter."""
    if dataset_name == "landscapes":
        from ..data.landscape_analyzer import analyze_landscapes

        return analyze_landscapes(images)[1].long()
    if dataset_name == "shapes":
        return majority(shapes_classes(images), len(SHAPES_PALETTE))
    raise UnnoiseError(f"no segmentation analyzer for {dataset_name!r}; valid: landscapes, shapes")


def mean_iou(found: Tensor, target: Tensor, classes: int) -> Tensor:
    """Per-image mean IoU (B,) over the classes present in either map of (B, H, W) class maps."""
    found_hot = torch.nn.functional.one_hot(found.long(), classes).flatten(1, 2).bool()  # (B, HW, K)
    target_hot = torch.nn.functional.one_hot(target.long(), classes).flatten(1, 2).bool()
    intersection = (found_hot & target_hot).sum(1).float()  # (B, K)
    union = (found_hot | target_hot).sum(1).float()
    present = union > 0
    return torch.where(present, intersection / union.clamp_min(1), torch.zeros_like(union)).sum(1) / present.sum(1)


def pooled_mean_iou(found: Tensor, target: Tensor, classes: int) -> float:
    """Mean IoU over a set of (B, H, W) class maps, as segmentation benchmarks report it: intersections and
    unions summed over every image per class, then averaged over the classes present in the targets."""
    found_hot = torch.nn.functional.one_hot(found.long(), classes).flatten(0, 2).bool()  # (B H W, K)
    target_hot = torch.nn.functional.one_hot(target.long(), classes).flatten(0, 2).bool()
    intersection = (found_hot & target_hot).sum(0).float()
    union = (found_hot | target_hot).sum(0).float()
    present = target_hot.any(0)
    return float((intersection[present] / union[present]).mean())
