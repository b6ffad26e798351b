"""Note names and fundamental-frequency detection.

Equal temperament with A4 = 440 Hz: f = 440 * 2^((m - 69) / 12) for MIDI number m, C4 = 60.
`detect_f0` is YIN (de Cheveigné & Kawahara 2002): the difference function d(tau) (their Eq. 6),
its cumulative-mean normalisation d'(tau) (Eq. 8), the first dip below a threshold (step 4) refined
by parabolic interpolation (step 5).
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch

from unnoise.errors import UnnoiseError

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NOTE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}


def midi_of_name(name: str) -> int:
    """"C4" -> 60, "A4" -> 69, "F#3" -> 54, "Bb2" -> 46."""
    match = _NOTE.match(str(name).strip())
    if not match:
        raise UnnoiseError(f"not a note name: {name!r} (expected e.g. C4, F#3, Bb2)")
    letter, accidental, octave = match.group(1).upper(), match.group(2), int(match.group(3))
    key = _FLATS.get(letter + accidental, letter + accidental)
    if key not in NOTE_NAMES:  # Cb, Fb, E#, B#: cross the octave boundary
        step = NOTE_NAMES.index(letter) + (1 if accidental == "#" else -1)
        return 12 * (octave + 1) + step
    return 12 * (octave + 1) + NOTE_NAMES.index(key)


def name_of_midi(midi: int) -> str:
    """60 -> "C4"."""
    return f"{NOTE_NAMES[int(midi) % 12]}{int(midi) // 12 - 1}"


def frequency_of_midi(midi: float) -> float:
    return 440.0 * 2.0 ** ((float(midi) - 69.0) / 12.0)


def midi_of_frequency(frequency: float) -> float:
    """Fractional MIDI number; NaN for non-positive frequencies."""
    return 69.0 + 12.0 * math.log2(frequency / 440.0) if frequency > 0 else float("nan")


def detect_f0(audio: torch.Tensor, sample_rate: int, fmin: float = 60.0, fmax: float = 1200.0,
              threshold: float = 0.15) -> torch.Tensor:
    """YIN fundamental of each clip in (..., L): a tensor (...) in Hz, NaN where the clip is silent."""
    flat = torch.as_tensor(audio).detach().reshape(-1, audio.shape[-1]).to(torch.float64).cpu().numpy()
    f0 = [_yin(clip, sample_rate, fmin, fmax, threshold) for clip in flat]
    return torch.tensor(f0, dtype=torch.float64).reshape(audio.shape[:-1])


def _yin(clip: np.ndarray, sample_rate: int, fmin: float, fmax: float, threshold: float) -> float:
    lag_min = max(2, int(sample_rate / fmax))
    lag_max = min(len(clip) // 2, int(math.ceil(sample_rate / fmin)))
    if lag_max <= lag_min + 2 or not np.any(clip):
        return float("nan")
    window = len(clip) - lag_max
    d = _difference(clip, window, lag_max)
    cumulative = np.cumsum(d[1:])
    d_norm = np.ones_like(d)
    d_norm[1:] = d[1:] * np.arange(1, lag_max + 1) / np.maximum(cumulative, 1e-300)  # Eq. 8
    lag = _first_dip(d_norm, lag_min, lag_max, threshold)
    return sample_rate / _parabolic(d_norm, lag)


def _difference(clip: np.ndarray, window: int, lag_max: int) -> np.ndarray:
    """d(tau) = sum_{j<W} (x_j - x_{j+tau})^2 for tau = 0..lag_max (Eq. 6), via one FFT correlation."""
    size = 1 << int(math.ceil(math.log2(window + lag_max + 1)))
    spectrum = np.fft.rfft(clip[:window + lag_max], size)
    head = np.fft.rfft(clip[:window], size)
    cross = np.fft.irfft(spectrum * np.conj(head), size)[:lag_max + 1]  # sum_j x_j x_{j+tau}
    squares = np.concatenate([[0.0], np.cumsum(clip[:window + lag_max] ** 2)])
    energy_lagged = squares[window + np.arange(lag_max + 1)] - squares[np.arange(lag_max + 1)]
    return np.maximum(squares[window] + energy_lagged - 2 * cross, 0.0)


def _first_dip(d_norm: np.ndarray, lag_min: int, lag_max: int, threshold: float) -> int:
    """The first lag whose d' falls below the threshold, followed to its local minimum; else the global one."""
    below = np.nonzero(d_norm[lag_min:lag_max] < threshold)[0]
    if below.size == 0:
        return lag_min + int(np.argmin(d_norm[lag_min:lag_max]))
    lag = lag_min + int(below[0])
    while lag + 1 < lag_max and d_norm[lag + 1] < d_norm[lag]:
        lag += 1
    return lag


def _parabolic(values: np.ndarray, index: int) -> float:
    """The vertex of the parabola through values[index-1..index+1]."""
    if index <= 0 or index >= len(values) - 1:
        return float(index)
    left, centre, right = values[index - 1], values[index], values[index + 1]
    curvature = left - 2 * centre + right
    return index + (0.5 * (left - right) / curvature if curvature > 0 else 0.0)


def pitch_class_matches(f0: torch.Tensor, midi: torch.Tensor) -> torch.Tensor:
    """Bool per clip: the detected fundamental rounds to the requested pitch class (octave ignored)."""
    midi = torch.as_tensor(midi).reshape(-1)
    if f0.numel() != midi.numel():
        raise UnnoiseError(f"{f0.numel()} detected pitches for {midi.numel()} requested ones")
    detected = 69.0 + 12.0 * torch.log2(f0.reshape(-1).to(torch.float64) / 440.0)
    ok = torch.isfinite(detected)
    nearest = torch.where(ok, detected, torch.zeros_like(detected)).round().long()
    return ok & ((nearest - midi.long()) % 12 == 0)
