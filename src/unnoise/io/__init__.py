"""Writing samples to files, by the data's modality (never by tensor rank) and the path's suffix.

    write_samples(x, spec, path)          samples (N, *spec.shape) -> the files written
    write_trajectory(frames, spec, path)  a list of such batches along a sampling trajectory -> one file

The formats each modality writes (the suffix of `path` picks one; any other is a one-line error):

  image     .png .jpg .jpeg     a grid of the images
  audio     .wav                one WAV file per clip: exactly PATH for one clip, NAME-000.wav,
                                NAME-001.wav, ... beside it for several
            .png .jpg .jpeg     a grid of their spectrograms
  points    .png .jpg .jpeg     a scatter (one point per sample) or a grid of clouds (x-y projection)
  molecule  .sdf .xyz          every molecule (SDF: 3-D molfiles with the evaluator's bonds), io/molecules.py
            .png .jpg .jpeg     the first 64: RDKit's 2-D depictions (with RDKit) above 3-D views
  tokens    .txt                one line of text per sample (ids, or words through `vocabulary=`)
  video     .gif                an animation; .png .jpg .jpeg: every frame in a grid
  trajectory .png .jpg .jpeg    a grid of the plans' x-y paths (channels 0 and 1), io/trajectory.py

Trajectories: image, points and molecule as an animated .gif; tokens as .txt; audio and video have none.
The writers live in io/image.py, io/audio.py, io/points.py, io/text.py and io/video.py; io/plots.py
draws training plots.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import torch

from unnoise.data.spec import DataSpec
from unnoise.errors import UnnoiseError
from unnoise.io.files import check_suffix

PICTURES = (".png", ".jpg", ".jpeg")
SAMPLE_FORMATS = {
    "image": PICTURES,
    "audio": (".wav",) + PICTURES,
    "points": PICTURES,
    "molecule": (".sdf", ".xyz") + PICTURES,
    "tokens": (".txt",),
    "video": (".gif",) + PICTURES,
    "trajectory": PICTURES,
}
TRAJECTORY_FORMATS = {"image": (".gif",), "points": (".gif",), "molecule": (".gif",), "tokens": (".txt",)}
SAMPLE_WRITERS = {
    "image": "image:write_image_samples",
    "audio": "audio:write_audio_samples",
    "points": "points:write_points_samples",
    "molecule": "molecules:write_molecule_samples",
    "tokens": "text:write_token_samples",
    "video": "video:write_video_samples",
    "trajectory": "trajectory:write_trajectory_samples",
}
TRAJECTORY_WRITERS = {
    "image": "image:write_image_trajectory",
    "points": "points:write_points_trajectory",
    "molecule": "points:write_points_trajectory",
    "tokens": "text:write_token_trajectory",
}


def preview_suffix(spec) -> str:
    """The suffix of a run's preview file (training sample grids): .txt for tokens, .png otherwise."""
    return ".txt" if as_spec(spec).modality == "tokens" else ".png"


def as_spec(spec) -> DataSpec:
    """A DataSpec, or the `.spec` of what is passed (a RunConfig, a dataset)."""
    spec = getattr(spec, "spec", spec)
    if not isinstance(spec, DataSpec):
        raise TypeError(f"expected a DataSpec (or an object with .spec), got {type(spec).__name__}")
    return spec


def check_samples_path(spec, path: str | Path) -> str:
    """The suffix of `path` when samples of `spec` can be written there, else a one-line error naming the
    suffix and the valid ones. Call it before sampling to fail early."""
    spec = as_spec(spec)
    return check_suffix(path, SAMPLE_FORMATS[spec.modality], f"{spec.modality} samples")


def check_trajectory_path(spec, path: str | Path) -> str:
    """The suffix of `path` when a trajectory of `spec` samples can be written there, else a one-line error."""
    spec = as_spec(spec)
    if spec.modality not in TRAJECTORY_FORMATS:
        kinds = ", ".join(TRAJECTORY_FORMATS)
        raise UnnoiseError(f"{path}: trajectories are written for {kinds} data, not {spec.modality}")
    return check_suffix(path, TRAJECTORY_FORMATS[spec.modality], f"a {spec.modality} trajectory")


def _writer(table: dict, modality: str):
    module, function = table[modality].split(":")
    return getattr(importlib.import_module(f"unnoise.io.{module}"), function)


def _checked_batch(x: torch.Tensor, spec: DataSpec, path) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim == 0 or len(x) == 0 or tuple(x.shape[1:]) != spec.shape:
        raise UnnoiseError(f"{path}: expected {spec.modality} samples of shape (N, {', '.join(map(str, spec.shape))})"
                           f" with N >= 1, got {tuple(x.shape)}")
    return x


def write_samples(x: torch.Tensor, spec, path: str | Path, **options) -> list[Path]:
    """Write samples x (N, *spec.shape) in the format the suffix of `path` names (see the module docstring);
    returns the paths written. For audio to .wav: exactly `path` when N = 1, else NAME-000.wav, ... beside
    it. `options` go to the modality's writer (tokens: `vocabulary`, `separator`)."""
    spec = as_spec(spec)
    check_samples_path(spec, path)
    return _writer(SAMPLE_WRITERS, spec.modality)(_checked_batch(x, spec, path), spec, path, **options)


def write_trajectory(frames: Sequence[torch.Tensor], spec, path: str | Path, **options) -> Path:
    """Write batches along a trajectory (each (N, *spec.shape), e.g. the x0 estimates per step) as one file:
    an animated GIF (image, points, molecule) or text (tokens); returns its path."""
    spec = as_spec(spec)
    check_trajectory_path(spec, path)
    if len(frames) == 0:
        raise UnnoiseError(f"{path}: no trajectory frames to write")
    frames = [_checked_batch(frame, spec, path) for frame in frames]
    return _writer(TRAJECTORY_WRITERS, spec.modality)(frames, spec, path, **options)


__all__ = ["SAMPLE_FORMATS", "TRAJECTORY_FORMATS", "as_spec", "check_samples_path", "check_trajectory_path",
           "preview_suffix", "write_samples", "write_trajectory"]
