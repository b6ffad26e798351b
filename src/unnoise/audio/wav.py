"""WAV files and clip preparation: read, write, resample, mono mixdown, peak normalisation.

Clips are float32 tensors (C, L) in [-1, 1]. Reading and writing go through `soundfile` (the
`audio` extra). PCM16 uses the convention int = round(x * 32768) clipped to [-32768, 32767] and
x = int / 32768 on reading, so any clip whose values are multiples of 1/32768 round-trips bit for bit.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from unnoise.errors import UnnoiseError

PCM16_SCALE = 32768.0
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def _soundfile():
    try:
        import soundfile

        return soundfile
    except (ImportError, OSError):  # OSError: the package is there but libsndfile is not
        raise UnnoiseError("audio I/O needs soundfile; install the extra: pip install 'unnoise[audio]'") from None


def read_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """A sound file as ((C, L) float32 in [-1, 1], sample rate); a one-line error names a bad file."""
    sf = _soundfile()
    path = Path(path)
    if not path.is_file():
        raise UnnoiseError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnnoiseError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise UnnoiseError(f"{path}: the audio file holds no samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def write_wav(path: str | Path, audio: torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write (C, L) or (L,) audio in [-1, 1] atomically (temporary file, then rename); returns the path."""
    sf = _soundfile()
    if subtype not in SUBTYPES:
        raise UnnoiseError(f"WAV subtype {subtype!r} not supported; valid: {', '.join(SUBTYPES)}")
    if int(sample_rate) < 1:
        raise UnnoiseError(f"{path}: sample rate must be a positive integer, got {sample_rate!r}")
    clip = _as_channels(audio).detach().to(torch.float32).cpu()
    if not torch.isfinite(clip).all():
        raise UnnoiseError(f"{path}: audio holds NaN or infinite values")
    frames = clip.T.numpy()
    if subtype == "PCM_16":
        frames = np.clip(np.round(frames.astype(np.float64) * PCM16_SCALE), -32768, 32767).astype(np.int16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        sf.write(temporary, frames, int(sample_rate), subtype=subtype, format="WAV")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _as_channels(audio: torch.Tensor) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.ndim == 1:
        return audio[None]
    if audio.ndim != 2:
        raise UnnoiseError(f"audio must be (L,) or (C, L), got shape {tuple(audio.shape)}")
    return audio


def to_mono(audio: torch.Tensor) -> torch.Tensor:
    """Mix (C, L) down to (1, L) by averaging the channels."""
    return _as_channels(audio).mean(dim=0, keepdim=True)


def peak_normalize(audio: torch.Tensor, peak: float = 0.95) -> torch.Tensor:
    """Scale so that max |x| = peak (per clip over its last two dims); silent clips stay silent."""
    if not 0 < peak <= 1:
        raise UnnoiseError(f"peak must be in (0, 1], got {peak}")
    top = audio.abs().amax(dim=(-2, -1) if audio.ndim >= 2 else -1, keepdim=True)
    return torch.where(top > 0, audio * (peak / top.clamp_min(1e-12)), audio)


def resample(audio: torch.Tensor, orig_rate: int, new_rate: int, zero_crossings: int = 16) -> torch.Tensor:
    """Band-limited resampling of (..., L) by Hann-windowed sinc interpolation.

    Output sample j sits at input time t_j = j * orig / new; it is sum_n x[n] h(t_j - n) with
    h(u) = c sinc(c u) w(u), c = min(1, new / orig) the cut-off (anti-aliasing when downsampling) and
    w a Hann window over |u| < zero_crossings / c. Samples outside the clip count as zero.
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate < 1 or new_rate < 1:
        raise UnnoiseError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return audio
    length = audio.shape[-1]
    out_length = max(1, math.ceil(length * new_rate / orig_rate))
    cutoff = min(1.0, new_rate / orig_rate)
    half_width = math.ceil(zero_crossings / cutoff)
    flat = audio.reshape(-1, length).to(torch.float64)
    padded = torch.nn.functional.pad(flat, (half_width, half_width + 1))
    taps = torch.arange(-half_width + 1, half_width + 1, dtype=torch.float64)
    out = []
    for start in range(0, out_length, 16384):
        j = torch.arange(start, min(out_length, start + 16384), dtype=torch.float64)
        t = j * orig_rate / new_rate
        index = torch.floor(t)[:, None] + taps  # (J, taps) input indices
        u = t[:, None] - index
        window = torch.where(u.abs() < half_width, 0.5 + 0.5 * torch.cos(math.pi * u / half_width), 0.0)
        kernel = cutoff * torch.sinc(cutoff * u) * window
        values = padded[:, (index + half_width).long()]  # (B, J, taps)
        out.append((values * kernel).sum(-1))
    return torch.cat(out, dim=-1).to(audio.dtype).reshape(*audio.shape[:-1], out_length)


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """Crop (from the start) or zero-pad (at the end) the last dim to `length` samples."""
    have = audio.shape[-1]
    if have >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - have))


def load_clip(path: str | Path, sample_rate: int, length: int | None = None, mono: bool = True,
              peak: float | None = 0.95) -> torch.Tensor:
    """A file prepared for training: resampled, mixed to mono, fitted to `length`, peak-normalised."""
    audio, rate = read_wav(path)
    if mono:
        audio = to_mono(audio)
    audio = resample(audio, rate, sample_rate)
    if length is not None:
        audio = fit_length(audio, length)
    return audio if peak is None else peak_normalize(audio, peak)
