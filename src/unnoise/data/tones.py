"""Procedurally synthesised instrument notes: the built-in audio dataset.

Each clip (default 4,096 samples at 8 kHz, about 0.5 s, mono, (1, L) in [-1, 1]) is one note of one
instrument at one of `pitches` semitones from `lowest` (default the 12 notes C4..B4). An instrument is
a harmonic profile (amplitude of harmonic k) and an ADSR envelope:

  flute     nearly pure: harmonics 1, 0.25, 0.06; soft 60 ms attack, light 5 Hz vibrato and breath noise
  clarinet  odd harmonics only (1, 0, 0.45, 0, 0.25, 0, 0.12, 0, 0.06); 25 ms attack
  strings   sawtooth-like 1/k over 10 harmonics; slow 100 ms attack, 5.5 Hz vibrato
  pluck     1/k^1.5 over 8 harmonics, 3 ms attack then exponential decay, faster for higher harmonics

Per clip, seeded: detune within +-8 cents, random harmonic phases, onset delay up to 20 ms, envelope
times within +-20%, and a peak level in [0.5, 0.9]. Harmonics above 0.45 x the sample rate are dropped
(no aliasing). Splits "train" and "test" come from different random streams.

Labels (`label`): "pitch" (class names "C4", "C#4", ...), "instrument", or "note" (pitch x instrument,
names like "C4/flute"). `dataset.midi` and `dataset.instruments` hold both labels whatever is chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unnoise.audio.pitch import frequency_of_midi, midi_of_name, name_of_midi
from unnoise.data.base import ArrayDataset, choice, positive_int
from unnoise.errors import UnnoiseError


@dataclass(frozen=True)
class Instrument:
    harmonics: tuple[float, ...]
    attack: float  # seconds to full level
    decay: float  # seconds from full level to the sustain level
    sustain: float  # level held until the release
    release: float  # seconds of linear fade at the end of the clip
    vibrato_depth: float = 0.0  # relative frequency deviation
    vibrato_rate: float = 5.0  # Hz
    noise: float = 0.0  # breath noise level relative to the note
    harmonic_decay: float = 0.0  # pluck: harmonic k decays at rate (1 + harmonic_decay * (k - 1)) / decay


INSTRUMENTS = {
    "flute": Instrument((1.0, 0.25, 0.06), 0.06, 0.05, 0.85, 0.06, vibrato_depth=0.003, noise=0.02),
    "clarinet": Instrument((1.0, 0.0, 0.45, 0.0, 0.25, 0.0, 0.12, 0.0, 0.06), 0.025, 0.05, 0.9, 0.05),
    "strings": Instrument(tuple(1.0 / k for k in range(1, 11)), 0.10, 0.10, 0.8, 0.08,
                          vibrato_depth=0.004, vibrato_rate=5.5),
    "pluck": Instrument(tuple(k ** -1.5 for k in range(1, 9)), 0.003, 0.18, 0.0, 0.02, harmonic_decay=0.6),
}
INSTRUMENT_NAMES = tuple(INSTRUMENTS)
LABELS = ("pitch", "instrument", "note")
SPLIT_SEEDS = {"train": 0, "all": 0, "test": 1}
DEFAULT_COUNTS = {"train": 2400, "all": 2400, "test": 480}
DETUNE_CENTS = 8.0


def _envelope(spec: Instrument, t: np.ndarray, onset: float, stretch: float, end: float) -> np.ndarray:
    """ADSR level at times t (seconds): linear attack, exponential decay toward sustain, linear release."""
    attack, decay, release = spec.attack * stretch, spec.decay * stretch, spec.release
    local = t - onset
    rise = np.clip(local / attack, 0.0, 1.0)
    after = np.clip(local - attack, 0.0, None)
    level = spec.sustain + (1.0 - spec.sustain) * np.exp(-after / decay)
    fade = np.clip((end - t) / release, 0.0, 1.0)
    return np.where(local < 0, 0.0, rise * level * fade)


def synthesize(instrument: str, midi: int, sample_rate: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """One note as float64 (length,), peak level in [0.5, 0.9]."""
    spec = INSTRUMENTS[instrument]
    t = np.arange(length) / sample_rate
    f0 = frequency_of_midi(midi) * 2.0 ** (rng.uniform(-DETUNE_CENTS, DETUNE_CENTS) / 1200.0)
    onset, stretch, end = rng.uniform(0.0, 0.02), rng.uniform(0.8, 1.2), length / sample_rate
    vibrato = spec.vibrato_depth * np.sin(2 * math.pi * spec.vibrato_rate * t + rng.uniform(0, 2 * math.pi))
    phase = 2 * math.pi * f0 * np.cumsum(1.0 + vibrato) / sample_rate  # integral of the instantaneous frequency
    tone = np.zeros(length)
    for k, amplitude in enumerate(spec.harmonics, start=1):
        if amplitude == 0.0 or k * f0 > 0.45 * sample_rate:
            continue
        partial = amplitude * np.sin(k * phase + rng.uniform(0, 2 * math.pi))
        if spec.harmonic_decay:
            rate = (1.0 + spec.harmonic_decay * (k - 1)) / (spec.decay * stretch)
            partial *= np.exp(-np.clip(t - onset, 0, None) * rate)
        tone += partial
    envelope = _envelope(spec, t, onset, stretch, end)
    clip = tone * envelope
    if spec.noise:
        clip += spec.noise * envelope * rng.standard_normal(length)
    return clip * (rng.uniform(0.5, 0.9) / max(np.abs(clip).max(), 1e-12))


def load_tones(split: str = "train", n: int | None = None, sample_rate: int = 8000, length: int = 4096,
               lowest: str = "C4", pitches: int = 12, instruments: str = "all", label: str = "pitch",
               seed: int = 0) -> ArrayDataset:
    """`n` clips (N, 1, length) balanced over pitch x instrument, labelled by `label`."""
    split = choice(split, "tones split", tuple(SPLIT_SEEDS))
    n = DEFAULT_COUNTS[split] if n is None else positive_int(n, "tones n")
    sample_rate, length = positive_int(sample_rate, "tones sample_rate"), positive_int(length, "tones length")
    pitches = positive_int(pitches, "tones pitches")
    label = choice(label, "tones label", LABELS)
    names = _instrument_list(instruments)
    base = midi_of_name(lowest)
    if frequency_of_midi(base + pitches - 1) >= 0.45 * sample_rate:
        raise UnnoiseError(f"tones: the highest note {name_of_midi(base + pitches - 1)} is above 0.45 x "
                           f"sample_rate {sample_rate}")
    rng = np.random.default_rng([int(seed), SPLIT_SEEDS[split], 8_000])
    order = rng.permutation(n)
    midi = torch.tensor([base + int(i) % pitches for i in order])
    which = torch.tensor([(int(i) // pitches) % len(names) for i in order])
    clips = np.stack([synthesize(names[w], int(m), sample_rate, length, rng) for m, w in zip(midi, which)])
    labels, class_names = _labels(label, midi - base, which, [name_of_midi(base + p) for p in range(pitches)], names)
    dataset = ArrayDataset(torch.from_numpy(clips).float()[:, None], labels, class_names, name=f"tones[{split}]",
                           modality="audio", sample_rate=sample_rate)
    dataset.midi, dataset.instruments, dataset.instrument_names = midi, which, names
    return dataset


def _instrument_list(instruments: str) -> list[str]:
    if str(instruments).strip().lower() == "all":
        return list(INSTRUMENT_NAMES)
    names = [choice(name, "tones instrument", INSTRUMENT_NAMES) for name in str(instruments).split(",")]
    if len(set(names)) != len(names):
        raise UnnoiseError(f"tones: instrument listed twice in {instruments!r}")
    return names


def _labels(label: str, pitch: torch.Tensor, which: torch.Tensor, pitch_names: list[str], names: list[str]):
    if label == "pitch":
        return pitch, pitch_names
    if label == "instrument":
        return which, names
    return pitch * len(names) + which, [f"{p}/{w}" for p in pitch_names for w in names]
