"""Video samples as pictures: a grid of frames (PNG or JPEG) or an animation (GIF).

A `video` sample is (C, T, H, W): T frames of C = 1 or 3 channels in [-1, 1]. The still picture has one row
per sample and one column per frame; the GIF plays the frames, all samples side by side in a grid.
"""
from __future__ import annotations

from pathlib import Path

import torch

from unnoise.io.files import suffix_of
from unnoise.io.image import preview_upscale, save_gif, save_grid


def write_video_samples(x: torch.Tensor, spec, path: str | Path) -> list[Path]:
    """Video samples (N, C, T, H, W): .gif plays them; .png / .jpg / .jpeg shows every frame in a grid."""
    x = torch.as_tensor(x).detach().cpu()
    count, channels, frames, height, width = x.shape
    upscale = preview_upscale(spec)
    if suffix_of(path) == ".gif":
        return [save_gif([x[:, :, t] for t in range(frames)], path, upscale=upscale)]  # (N, C, H, W) per t
    stills = x.permute(0, 2, 1, 3, 4).reshape(count * frames, channels, height, width)  # row n: sample n's frames
    return [save_grid(stills, path, nrow=frames, upscale=upscale)]
