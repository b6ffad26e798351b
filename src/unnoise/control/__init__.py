"""Control images for ControlNet runs (nn/controlnet.py): the kinds a run can be trained on, each with its
channel count and its extractor from training rows, plus reading a user's control image.

An extractor maps (images (B, C, H, W) in [-1, 1], dataset rows (B,) or None, the dataset) to control
images (B, C_ctrl, H, W) in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..errors import unknown_name
from .edges import canny, edge_f1, sketch
from .segmentation import colour_map, dataset_classes, mean_iou, palette_of


@dataclass(frozen=True)
class ControlKind:
    name: str
    channels: int
    extract: Callable  # (images, index, dataset) -> (B, channels, H, W) in [0, 1]
    description: str


def _edges(images: Tensor, index, dataset) -> Tensor:
    return canny(images)


def _sketch(images: Tensor, index, dataset) -> Tensor:
    return sketch(images)


def _segmentation(images: Tensor, index, dataset) -> Tensor:
    return colour_map(dataset_classes(images, index, dataset), palette_of(getattr(dataset, "name", "")))


KINDS = {
    "edges": ControlKind("edges", 1, _edges, "Canny edges (white on black)"),
    "sketch": ControlKind("sketch", 1, _sketch, "coarse thick contours, as drawn by hand (white on black)"),
    "segmentation": ControlKind("segmentation", 3, _segmentation, "class maps in the dataset's palette"),
}


def control_kind(name: str) -> ControlKind:
    """The control kind `name`, or a one-line error listing the kinds."""
    if name not in KINDS:
        raise unknown_name("model.control_kind", name, KINDS)
    return KINDS[name]


def control_factor(config) -> int:
    """Control image size / network input size of a resolved run config: a latent run's codec downsampling, else 1."""
    codec = config.model.codec
    latent = codec.get("latent_shape") if isinstance(codec, dict) else None
    return int(config.data_shape[-1]) // int(latent[-1]) if latent else 1


def controlled_network(base, config):
    """`base` with a ControlNet for the run's control kind (run/build.build_denoiser's hook); on a latent run
    the control image, at the data's size, is encoded down to the latent size."""
    from ..nn.controlnet import ControlledUNet

    return ControlledUNet.from_unet(base, control_kind(config.model.control_kind).channels, control_factor(config))


__all__ = ["KINDS", "ControlKind", "control_kind", "controlled_network", "canny", "sketch", "edge_f1", "mean_iou"]
