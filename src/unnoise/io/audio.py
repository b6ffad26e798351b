"""Audio samples as files: WAV files (one per clip) and pictures of their spectrograms (PNG or JPEG).

Clips are tensors in [-1, 1] shaped (N, C, L) at the spec's sample rate. WAV files go through soundfile
(the `audio` extra), pictures through Pillow; each is imported only when a file is written.
"""
from __future__ import annotations

from pathlib import Path

import torch

from unnoise.audio.spectrogram import spectrogram_image
from unnoise.errors import UnnoiseError
from unnoise.io.files import check_suffix, pillow_image, save_picture, tile_arrays

SPECTROGRAM_FFT = 256


def numbered_paths(path: str | Path, count: int) -> list[Path]:
    """The file names for `count` clips: exactly `path` for one; NAME-000.wav, NAME-001.wav, ... (at least
    three digits, more when count > 1000) beside it for several."""
    path = Path(path)
    if count == 1:
        return [path]
    digits = max(3, len(str(count - 1)))
    return [path.with_name(f"{path.stem}-{index:0{digits}d}{path.suffix}") for index in range(count)]


def save_wavs(clips: torch.Tensor, path: str | Path, sample_rate: int) -> list[Path]:
    """Write clips (N, C, L) in [-1, 1] as PCM16 WAV files named by `numbered_paths`; returns the paths."""
    from unnoise.audio.wav import write_wav

    check_suffix(path, (".wav",), "audio")
    clips = torch.as_tensor(clips).detach().cpu().float().clamp(-1, 1)
    if clips.ndim != 3 or len(clips) == 0:
        raise UnnoiseError(f"{path}: audio samples must be (N, C, L) with N >= 1, got shape {tuple(clips.shape)}")
    paths = numbered_paths(Path(path).expanduser(), len(clips))
    return [write_wav(file, clip, sample_rate) for clip, file in zip(clips, paths)]


def spectrogram_grid_image(batch: torch.Tensor, n_fft: int = SPECTROGRAM_FFT, scale: int = 2,
                           columns: int | None = None):
    """Spectrograms of a batch (N, C, L) or (N, L) tiled with 2-pixel white gaps, as a Pillow picture."""
    batch = torch.as_tensor(batch).detach().cpu().float()
    batch = batch[:, None] if batch.ndim == 2 else batch
    tiles = [spectrogram_image(clip, n_fft).repeat(scale, 0).repeat(scale, 1) for clip in batch]
    return pillow_image().fromarray(tile_arrays(tiles, columns))


def save_spectrogram_grid(batch: torch.Tensor, path: str | Path, n_fft: int = SPECTROGRAM_FFT, scale: int = 2,
                          columns: int | None = None) -> Path:
    """Write the spectrograms of a batch (N, C, L) or (N, L) as one picture, PNG or JPEG by suffix."""
    return save_picture(spectrogram_grid_image(batch, n_fft, scale, columns), path)


def save_spectrogram(audio: torch.Tensor, path: str | Path, n_fft: int = SPECTROGRAM_FFT, scale: int = 2) -> Path:
    """Write one clip's spectrogram (L,) or (C, L) as a picture (each STFT cell `scale` pixels square)."""
    audio = torch.as_tensor(audio)
    return save_spectrogram_grid(audio.reshape(1, -1, audio.shape[-1]), path, n_fft, scale)


def write_audio_samples(x: torch.Tensor, spec, path: str | Path) -> list[Path]:
    """Audio samples (N, C, L): .wav writes one WAV file per clip (see `numbered_paths`: exactly `path`
    for one clip, NAME-000.wav ... for several); .png / .jpg / .jpeg writes their spectrogram grid."""
    if Path(path).suffix.lower() == ".wav":
        return save_wavs(x, path, spec.sample_rate)
    return [save_spectrogram_grid(x, path, n_fft=min(SPECTROGRAM_FFT, spec.shape[-1]))]
