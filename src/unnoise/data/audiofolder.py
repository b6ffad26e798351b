"""A folder of sound files (searched recursively), labelled by subfolder when every file has one.

Every file is read with soundfile (WAV, FLAC, OGG, AIFF, ...), mixed to mono (or kept in `channels`
channels), resampled to `sample_rate`, cropped or zero-padded to `length` samples and peak-normalised
to 0.95. Files soundfile cannot read (corrupt files, text files, ...), files with no samples and files
with a different channel count when `channels` > 1 are skipped: one warning per file on the
"unnoise.data" logger, then a summary line; `dataset.skipped` lists them. Hidden files are ignored.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from unnoise.audio.wav import load_clip
from unnoise.data.base import ArrayDataset, positive_int
from unnoise.data.imagefolder import _candidate_files, _labels_from_subfolders
from unnoise.errors import UnnoiseError

log = logging.getLogger("unnoise.data")


def _read_clip(path: Path, sample_rate: int, length: int, channels: int) -> torch.Tensor:
    audio = load_clip(path, sample_rate, length, mono=channels == 1, peak=0.95)
    if audio.shape[0] != channels:
        raise UnnoiseError(f"{path}: {audio.shape[0]} channels, expected {channels}")
    return audio


def load_audiofolder(path: str | None = None, sample_rate: int = 16000, length: int = 8192,
                     channels: int = 1) -> ArrayDataset:
    """Sound files below `path` as (N, channels, length) float32 in [-1, 1] at `sample_rate`."""
    if path is None or str(path).strip() == "":
        raise UnnoiseError("audiofolder: option 'path' is required (the audio directory)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UnnoiseError(f"audiofolder: no such directory: {root}")
    sample_rate, length = positive_int(sample_rate, "audiofolder sample_rate"), positive_int(length, "audiofolder length")
    channels = positive_int(channels, "audiofolder channels")
    clips, read, skipped = [], [], []
    for file in _candidate_files(root):
        try:
            clips.append(_read_clip(file, sample_rate, length, channels))
        except UnnoiseError as error:
            log.warning("audiofolder: skipped %s", error)
            skipped.append(str(file))
            continue
        read.append(file.relative_to(root))
    if not clips:
        raise UnnoiseError(f"audiofolder: no readable audio files in {root} ({len(skipped)} skipped)")
    labels, class_names = _labels_from_subfolders(read)
    dataset = ArrayDataset(torch.stack(clips), labels, class_names, name=f"audiofolder:{root.name}",
                           modality="audio", sample_rate=sample_rate)
    dataset.skipped = skipped
    level = logging.WARNING if skipped else logging.INFO
    log.log(level, "audiofolder %s: loaded %d clips, skipped %d files", root, len(clips), len(skipped))
    return dataset
