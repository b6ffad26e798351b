"""Audio quality of the `tones` preset: pitch accuracy with and without guidance, and log-mel FD.

Trains the `tones` preset (class-conditional 1-D U-Net on the built-in tones, labels = pitch) within
its CPU budget, or reuses --run. Then, for each of the 12 pitches, --per-pitch clips are sampled with
classifier-free guidance at --guidance and without it (the conditional model alone, scale 1), with the
run's sampler settings and per-sample seeds. Each clip's fundamental is detected with YIN
(`unnoise.audio.pitch.detect_f0`); a clip counts as correct when the fundamental rounds to the requested
pitch class. FD is the Fréchet distance of log-mel features (mean and std over time of 32 mel bands)
of the guided clips against as many held-out real clips (the "test" split); `fd_logmel_floor` is the
same FD between two disjoint sets of real clips of that size, the best any model can score.

    python benchmarks/audio_quality.py --json [--run DIR] [--runs-dir runs/audio] [--per-pitch 16]

Prints {"pitch_accuracy": {"guided", "unguided"}, "fd_logmel": ..., "train_seconds": ..., ...}.
Target (issue 9): >= 90% pitch accuracy with guidance, after at most 30 minutes of CPU training.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

SEED = 50_000
N_MELS = 32


def ensure_run(given: Path | None, runs_dir: Path, steps: int | None) -> tuple[Path, float | None]:
    """The run to evaluate and its training seconds (None when it was trained earlier)."""
    from unnoise.run.config import config_from_dict
    from unnoise.run.training import train_run as train
    from unnoise.run.presets import preset

    if given is not None:
        return given, None
    run_dir = runs_dir / "tones"
    if (run_dir / "checkpoint" / "ema.safetensors").is_file():
        return run_dir, None
    config = preset("tones")
    if steps:
        config["train"]["steps"] = steps
    t0 = time.perf_counter()
    train(config_from_dict(config), run_dir)
    return run_dir, round(time.perf_counter() - t0, 1)


def sample_pitches(pipe, per_pitch: int, guidance: float, steps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips (N, 1, L), requested MIDI (N,)): per_pitch clips of every class, classes interleaved."""
    from unnoise.audio.pitch import midi_of_name
    from unnoise.pipeline import SampleRequest

    config = pipe.config
    classes = torch.arange(config.num_classes).repeat(per_pitch)
    clips = pipe.sample(SampleRequest(n=len(classes), seed=SEED, label=classes, guidance=guidance, steps=steps,
                                      batch_size=64))
    midi = torch.tensor([midi_of_name(config.class_names[int(c)]) for c in classes])
    return clips, midi


def pitch_accuracy(clips: torch.Tensor, midi: torch.Tensor, sample_rate: int) -> float:
    from unnoise.audio.pitch import detect_f0, pitch_class_matches

    return round(float(pitch_class_matches(detect_f0(clips, sample_rate), midi).float().mean()), 4)


def fd_logmel(clips: torch.Tensor, real: torch.Tensor, sample_rate: int) -> float:
    from unnoise.audio.spectrogram import logmel_features
    from unnoise.eval.metrics import fd

    features = logmel_features(clips.clamp(-1, 1), sample_rate, N_MELS).double()
    return round(fd(features, logmel_features(real, sample_rate, N_MELS).double()), 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--run", type=Path, help="an existing tones run (default: train the preset)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/audio"))
    parser.add_argument("--train-steps", type=int, help="override the preset's training steps")
    parser.add_argument("--per-pitch", type=int, default=16, help="clips sampled per pitch and setting")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--steps", type=int, help="sampler steps (default: the run's)")
    args = parser.parse_args(argv)
    from unnoise.data import load_dataset
    from unnoise.pipeline import Pipeline

    run_dir, train_seconds = ensure_run(args.run, args.runs_dir, args.train_steps)
    pipe = Pipeline.load(run_dir)
    config = pipe.config
    rate = config.sample_rate
    results, seconds = {}, {}
    for name, scale in (("guided", args.guidance), ("unguided", 1.0)):
        t0 = time.perf_counter()
        results[name] = sample_pitches(pipe, args.per_pitch, scale, args.steps)
        seconds[name] = round(time.perf_counter() - t0, 1)
        if not args.json:
            print(f"{name}: {len(results[name][0])} clips in {seconds[name]} s", file=sys.stderr)
    count = len(results["guided"][0])
    test = load_dataset("tones", split="test", n=2 * count)
    real = test.x
    report = {
        "pitch_accuracy": {name: pitch_accuracy(clips, midi, rate) for name, (clips, midi) in results.items()},
        "fd_logmel": fd_logmel(results["guided"][0], real[:count], rate),
        "fd_logmel_unguided": fd_logmel(results["unguided"][0], real[:count], rate),
        "fd_logmel_floor": fd_logmel(real[count:], real[:count], rate),
        "real_pitch_accuracy": pitch_accuracy(real, test.midi, rate),
        "train_seconds": train_seconds,
        "setup": {"run": str(run_dir), "clips": count, "guidance": args.guidance, "sampler": config.sample.sampler,
                  "steps": args.steps or config.sample.steps, "train_steps": config.train.steps,
                  "sample_seconds": seconds, "threads": torch.get_num_threads()},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
