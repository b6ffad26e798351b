"""ControlNet runs in the studio: generate from an uploaded control image (an edge map, a segmentation map or
a sketch) at a control scale, with the base run's class, prompt and guidance fields. Image i is sampled alone
from seed + i, like every other image form."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .builtin import generate_fields, sample_each_seed, sample_request
from .fields import Field
from .kinds import Form, Kind, register_kind


def control_fields(config) -> list[Field]:
    return [Field("control", "image", "Control image", help="edges, segmentation map or sketch"),
            Field("control_scale", "float", "Control scale", 1.0, 0, 10, help="0: the base model alone"),
            *generate_fields(config)]


def control_value(image, scale: float) -> dict:
    """The pipeline's control value of an uploaded picture: (C, H, W) in [0, 1] (grey stays one channel; the
    pipeline fits channels and size to the run, or names the mismatch)."""
    grey = image.mode in ("1", "L", "I", "I;16", "F")
    pixels = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy())
    return {"images": [tensor], "scales": [float(scale)]}


def _request(params: dict, images: dict):
    request = sample_request(params, params["seed"])
    return dataclasses.replace(request, control=control_value(images["control"], params["control_scale"]))


def check_control(config, params, images) -> None:
    """Submission-time checks: the guidance interval, and the control image against the run (its channels and
    size, as the pipeline will fit it)."""
    from ..conditions import conditions_for

    request = _request(params, images)
    conditions_for(config).get("control").from_request(request.control, 1)


def generate_controlled(ctx) -> None:
    sample_each_seed(ctx, lambda i, seed, x: ctx.write_png(f"{i:03d}.png", x[0], seed=seed),
                     _request(ctx.params, ctx.images))


register_kind(Kind("controlnet", lambda config: "control" in config.model.conditions,
                   (Form("generate", "Generate", control_fields, generate_controlled, check=check_control),),
                   "ControlNet: generate from a control image"))
