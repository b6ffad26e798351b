"""Control images for ControlNet runs (nn/controlnet.py): edges, segmentation maps or sketches computed on
the fly from each training image (unnoise/control/).

The part is {"images": (B, K, C, H, W) in [0, 1], "scales": (B, K)}: K = CONTROL_SLOTS control images per
sample, each with its scale; unused slots have scale 0 and cost nothing (the network skips a slot whose
scale is 0 in every row). Training rows fill slot 0 with scale 1. The null is scale 0 everywhere, which
the zero-initialised ControlNet turns into exactly the base model: classifier-free guidance then
extrapolates from the base towards the controlled model, and "no control" always works. Given with a class
or a prompt, the control stays in both branches instead (`keeping_control`, Pipeline.guided) and guidance
acts on those.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UnnoiseError
from .base import drop_mask, expand_condition

CONTROL_SLOTS = 4  # control images per sample at most (several controls at once: summed residuals)


class ControlCondition:
    name, key, request_key, droppable = "control", "control", "control", True

    def __init__(self, kind: str, shape: tuple, dataset=None):
        from ..control import control_kind

        self.kind = control_kind(kind)
        if len(shape) != 3:
            raise UnnoiseError(f"model.conditions: control needs image data (C, H, W), got data of shape "
                               f"{tuple(shape)}")
        self.size = tuple(shape[1:])
        self.dataset = dataset

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.kind.channels, *self.size)

    def network_options(self) -> dict:
        return {}  # the base U-Net is unchanged; run/control.py adds the control branch

    def part(self, images: Tensor, scales: Tensor) -> dict[str, Tensor]:
        """The part for images (B, k, C, H, W) and scales (B, k), k <= CONTROL_SLOTS, padded with empty slots."""
        batch, k = scales.shape
        pad = CONTROL_SLOTS - k
        images = torch.cat([images, images.new_zeros(batch, pad, *images.shape[2:])], 1)
        return {"images": images, "scales": torch.cat([scales, scales.new_zeros(batch, pad)], 1)}

    def extract(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """Control images (B, C, H, W) in [0, 1] of data x (B, C, H, W) in [-1, 1] (rows `index` of the dataset)."""
        return self.kind.extract(x, index, self.dataset).float()

    def from_batch(self, batch: dict) -> dict[str, Tensor]:
        """Each training row's control, from its image (a latent run's batch holds latents: the images are
        the dataset's `pixels` at the batch's rows)."""
        pixels, index = getattr(self.dataset, "pixels", None), batch.get("index")
        x = batch["x"] if pixels is None or index is None else pixels[index.cpu()].to(batch["x"].device)
        images = self.extract(x, index)
        return self.part(images[:, None], torch.ones(len(images), 1))

    def null(self, n: int, device=None) -> dict[str, Tensor]:
        return {"images": torch.zeros(n, CONTROL_SLOTS, *self.image_shape, device=device),
                "scales": torch.zeros(n, CONTROL_SLOTS, device=device)}

    def dropout(self, part: dict[str, Tensor], p: float, generator: torch.Generator) -> dict[str, Tensor]:
        """Each row's scales set to 0 (the null) with probability p."""
        if p <= 0:
            return part
        keep = ~drop_mask(len(part["scales"]), p, generator)
        return {"images": part["images"], "scales": part["scales"] * keep[:, None].to(part["scales"])}

    def preview(self, n: int, device=None) -> dict[str, Tensor]:
        """Controls for a sample grid of n: those of the dataset's first images in turn."""
        if self.dataset is None:
            raise UnnoiseError("control previews need the training dataset")
        index = torch.arange(n) % len(self.dataset.x)
        part = self.from_batch({"x": self.dataset.x[index], "index": index})
        return {key: value.to(device) for key, value in part.items()}

    def from_request(self, value, n: int, device=None) -> dict[str, Tensor]:
        """The part for n samples from one control image (C, H, W) in [0, 1], a stack (k, C, H, W), or
        {"images": k images, "scales": k numbers} (default scale 1); every sample gets the same controls.
        Images are fitted to the run's channels and size (control/images.fit_control)."""
        from ..control.images import fit_control

        images, scales = (value.get("images"), value.get("scales")) if isinstance(value, dict) else (value, None)
        if isinstance(images, Tensor) and images.ndim == 3:
            images = [images]
        images = [fit_control(image, self.kind.channels, self.size, f"control {i + 1}")
                  for i, image in enumerate(images)]
        scales = [1.0] * len(images) if scales is None else [float(s) for s in scales]
        if not 1 <= len(images) <= CONTROL_SLOTS or len(scales) != len(images):
            raise UnnoiseError(f"control: {len(images)} images and {len(scales)} scales given; expected 1 to "
                               f"{CONTROL_SLOTS} images with one scale each")
        if not all(s == s and abs(s) != float("inf") for s in scales):
            raise UnnoiseError(f"control scale must be a finite number, got {scales}")
        stack = torch.stack(images)[None].expand(n, *[-1] * 4)  # (n, k, C, H, W)
        part = self.part(stack, torch.tensor(scales, dtype=torch.float32)[None].expand(n, -1))
        return {key: value.to(device) for key, value in part.items()}


def keeping_control(null, cond: dict):
    """The null condition (a callable n -> condition) with the control part of `cond` (batch 1) in every row:
    classifier-free guidance then acts on the other conditions, the control applied to both branches."""
    control = cond["control"]
    return lambda n: {**null(n), "control": expand_condition(control, n)}
