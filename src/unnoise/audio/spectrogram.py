"""Spectrograms: STFT magnitudes, log-mel features, and the pixels of a clip's spectrogram picture.

The mel scale is the HTK one, m = 2595 log10(1 + f / 700); the filterbank is triangles between
adjacent mel-spaced centres. Pictures put low frequencies at the bottom, time to the right, and map
decibels (top 80 dB) through a dark-to-bright colour ramp. Files are written by `unnoise.io.audio`.
"""
from __future__ import annotations

import numpy as np
import torch

from unnoise.errors import UnnoiseError

DYNAMIC_RANGE_DB = 80.0
_RAMP = np.array([  # black -> purple -> orange -> pale yellow, the stops of a perceptual "heat" ramp
    (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
    (250, 193, 39), (252, 255, 164)], dtype=np.float64)


def stft_magnitude(audio: torch.Tensor, n_fft: int = 256, hop: int | None = None) -> torch.Tensor:
    """|STFT| of (..., L) with a periodic Hann window: (..., n_fft // 2 + 1, frames)."""
    hop = hop or n_fft // 4
    if audio.shape[-1] < n_fft:
        raise UnnoiseError(f"clip of {audio.shape[-1]} samples is shorter than the FFT size {n_fft}")
    flat = audio.reshape(-1, audio.shape[-1]).to(torch.float32)
    window = torch.hann_window(n_fft, dtype=flat.dtype, device=flat.device)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    return spec.abs().reshape(*audio.shape[:-1], *spec.shape[-2:])


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres uniform on the HTK mel scale."""
    fmax = fmax or sample_rate / 2
    to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    to_hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins) / np.maximum(upper - centre, 1e-9)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None)).to(torch.float32)


def log_mel(audio: torch.Tensor, sample_rate: int, n_mels: int = 64, n_fft: int = 512,
            hop: int | None = None) -> torch.Tensor:
    """log(mel power + 1e-6) of (..., L): (..., n_mels, frames)."""
    power = stft_magnitude(audio, n_fft, hop) ** 2
    bank = mel_filterbank(n_mels, n_fft, sample_rate).to(power.device)
    return torch.log(torch.einsum("mf,...ft->...mt", bank, power) + 1e-6)


def logmel_features(audio: torch.Tensor, sample_rate: int, n_mels: int = 64) -> torch.Tensor:
    """Per-clip features for Fréchet distance: the mean and std over time of each log-mel band, (N, 2 n_mels)."""
    mel = log_mel(audio.reshape(audio.shape[0], -1) if audio.ndim > 2 else audio, sample_rate, n_mels)
    return torch.cat([mel.mean(-1), mel.std(-1)], dim=-1)


def spectrogram_image(audio: torch.Tensor, n_fft: int = 256, hop: int | None = None) -> np.ndarray:
    """An RGB uint8 picture (freq, time, 3) of one clip (L,) or (C, L) (channels averaged)."""
    clip = torch.as_tensor(audio).reshape(-1, audio.shape[-1]).mean(0)
    db = 20.0 * torch.log10(stft_magnitude(clip, n_fft, hop) + 1e-10)
    level = ((db - (db.max() - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB).clamp(0, 1).flip(0).numpy()
    position = level * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return np.round(_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)
