"""Latent diffusion (issue 20): autoencoder reconstruction, latent vs pixel text-to-image, 128 px with f = 8.

Everything goes through the public API, so it measures what ships: runs are trained by `train_run` from the
shipped presets (landscapes-ae, photos-ae, landscapes-ldm, landscapes-pixel) with a few overrides, and
evaluated through `Pipeline` (encode / decode, sample with prompts).

- "autoencoder": each f = 4 autoencoder trains for a wall-clock budget; PSNR, SSIM and rFD of held-out
  reconstructions (landscapes of the "test" stream; crops of photographs never trained on).
- "race": the latent U-Net (landscapes-ldm, on the landscapes autoencoder's latents) and the pixel U-Net
  (landscapes-pixel) train for the same wall clock; each samples with its default sampler at the same NFE.
  FD of samples against fresh renders (with the real-vs-real floor at the same N), prompt adherence on seen
  and held-out attribute combinations (the analyzer reads time of day, snow, lake and trees back), seconds
  per image. Targets: latent FD <= 0.8x pixel FD; latent >= 3x faster per image; adherence >= 0.9 seen and
  >= 0.7 held-out.
- "hd": an f = 8 autoencoder and a latent U-Net at 128x128 (figures, no target).

FD uses the penultimate features of a small landscapes classifier (24 classes: time of day x snow x lake x
trees) trained here, deterministically, on fresh renders; the same features give the autoencoders' rFD.

    python benchmarks/latent_diffusion.py --json               # full: 64 px, about 4-5 hours on 2 cores
    python benchmarks/latent_diffusion.py --json --quick       # 32 px, small budgets: a few minutes

Prints {"autoencoder": {"landscapes": {...}, "photos": {...}, "f": 4}, "race": {...}, "hd": {...}, "settings"}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from torch import nn

PROMPT_KEYS = ("time", "snow", "lake", "trees")  # what every caption phrasing names
FULL = {"size": 64, "ae_seconds": 1800, "race_seconds": 2400, "hd_seconds": 600, "n_fd": 5000, "n_prompts": 500,
        "n_train": 4000, "classifier_steps": 1500, "ae_channels": 32, "unet_channels": 64, "warmup": 200}
QUICK = {"size": 32, "ae_seconds": 40, "race_seconds": 45, "hd_seconds": 20, "n_fd": 100, "n_prompts": 20,
         "n_train": 1000, "classifier_steps": 150, "ae_channels": 16, "unet_channels": 32, "warmup": 20}
CALIBRATION_STEPS = 4


# ---- features for FD -------------------------------------------------------------------------------

class LandscapeClassifier(nn.Module):
    """(3, S, S) landscapes -> 128 features -> 24 classes (time of day x snow x lake x trees)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, 128), nn.SiLU())
        self.head = nn.Linear(128, 24)

    def forward(self, x):
        return self.head(self.body(x))


def scene_class(attributes: dict) -> int:
    from unnoise.data.landscapes import TIMES

    return TIMES.index(attributes["time"]) * 8 + attributes["snow"] * 4 + attributes["lake"] * 2 + attributes["trees"]


def train_classifier(size: int, steps: int) -> LandscapeClassifier:
    """The feature classifier, trained on renders of every split (held-out combinations included)."""
    from unnoise.data.landscapes import render_landscapes

    torch.manual_seed(0)
    scenes = [render_landscapes(range(1500), size, split, seed=7) for split in ("train", "heldout")]
    x = torch.cat([s["images"] for s in scenes])
    y = torch.tensor([scene_class(a) for s in scenes for a in s["attributes"]])
    model = LandscapeClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(len(x), (128,), generator=generator)
        noisy = x[index] + 0.05 * torch.randn(x[index].shape, generator=generator)
        loss = nn.functional.cross_entropy(model(noisy), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def features(classifier, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([classifier.body(chunk.clamp(-1, 1)) for chunk in images.split(256)]).double()


def fd(classifier, a: torch.Tensor, b: torch.Tensor) -> float:
    from unnoise.eval.metrics import fd as frechet

    return round(float(frechet(features(classifier, a), features(classifier, b))), 4)


# ---- training through train_run for a wall-clock budget --------------------------------------------

def preset_config(name: str, overrides: dict):
    """A shipped preset with nested `overrides` merged in, as a RunConfig."""
    from unnoise.run.config import config_from_dict
    from unnoise.run.presets import preset

    config = preset(name)
    for section, values in overrides.items():
        for key, value in values.items():
            part = config.setdefault(section, {})
            part[key] = {**part.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(config, where=name)


def train_for(config, run: Path, seconds: float) -> dict:
    """Train a run for about `seconds` of training-loop wall clock: a few steps to time one, then a resume
    to the step count the budget allows. Returns the last summary with the loop seconds summed."""
    from unnoise.run.training import train_run

    first = train_run(config, run, steps=CALIBRATION_STEPS, preview=False)
    per_step = first["seconds"] / CALIBRATION_STEPS
    total = max(CALIBRATION_STEPS + 1, int(seconds / per_step))
    last = train_run(None, run, resume=True, steps=total, preview=False)
    return {"steps": last["steps"], "images_seen": last["images_seen"],
            "train_seconds": round(first["seconds"] + last["seconds"], 1)}


def common_overrides(s: dict, threads: int) -> dict:
    return {"train": {"threads": threads, "sample_every": 0, "checkpoint_every": 0, "checkpoint_minutes": 0,
                      "warmup_steps": s["warmup"]}}


def merge(*parts: dict) -> dict:
    merged: dict = {}
    for part in parts:
        for section, values in part.items():
            merged.setdefault(section, {}).update(values)
    return merged


# ---- sections --------------------------------------------------------------------------------------

def heldout_images(name: str, size: int, n: int) -> torch.Tensor:
    from unnoise.data import load_dataset

    return load_dataset(name, size=size, n=n, split="test").x


def autoencoder_section(s: dict, root: Path, classifier, threads: int) -> tuple[dict, Path]:
    """Both f = 4 autoencoders; returns the section and the landscapes autoencoder's run directory."""
    from unnoise.eval.reconstruction import reconstruction_metrics
    from unnoise.pipeline import Pipeline

    section: dict = {"f": 4}
    for name in ("landscapes", "photos"):
        run = root / f"{name}-ae"
        overrides = merge(common_overrides(s, threads), {
            "data": {"options": {"size": s["size"], "n": s["n_train"]}},
            "model": {"network_options": {"channels": s["ae_channels"]}}})
        trained = train_for(preset_config(f"{name}-ae", overrides), run, s["ae_seconds"])
        pipe = Pipeline.load(run, device="cpu")
        x = heldout_images(name, s["size"], 256)
        x_hat = pipe.decode(pipe.encode(x)).clamp(-1, 1)
        metrics = {k: round(v, 4) for k, v in reconstruction_metrics(x, x_hat).items()}
        section[name] = {**metrics, "rfd": fd(classifier, x, x_hat), **trained,
                         "latent_scale": round(pipe.codec.latent_scale.scale, 5)}
    return section, root / "landscapes-ae"


def prompts_of(split: str, n: int, size: int) -> tuple[list[str], list[dict]]:
    from unnoise.data.landscapes import render_landscapes

    scenes = render_landscapes(range(n), size, split, seed=11)
    return scenes["captions"], scenes["attributes"]


def sample_prompts(pipe, prompts: list[str]) -> tuple[torch.Tensor, float]:
    """One sample per prompt (seed i for prompt i) and the seconds per image."""
    from unnoise.pipeline import SampleRequest

    start = time.perf_counter()
    x = pipe.sample(SampleRequest(n=len(prompts), prompt=prompts, seed=0, batch_size=100))
    return x, (time.perf_counter() - start) / len(prompts)


def adherence(images: torch.Tensor, truth: list[dict]) -> float:
    from unnoise.data.landscape_analyzer import analyze_landscapes, score_attributes

    found, _ = analyze_landscapes(images.clamp(-1, 1))
    return round(score_attributes(truth, found, keys=PROMPT_KEYS)["all"], 4)


def evaluate_text_run(pipe, s: dict, classifier, reference: torch.Tensor) -> dict:
    """FD against fresh renders, adherence on seen and held-out combinations, seconds per image."""
    from unnoise.pipeline import SampleRequest

    prompts, _ = prompts_of("test", s["n_fd"], s["size"])
    samples, seconds = sample_prompts(pipe, prompts)
    result = {"fd": fd(classifier, samples, reference), "seconds_per_image": round(seconds, 5),
              "sampler": pipe.config.sample.sampler, "nfe": pipe.plan(SampleRequest()).nfe}
    for split, key in (("test", "adherence_seen"), ("heldout", "adherence_heldout")):
        prompts, truth = prompts_of(split, s["n_prompts"], s["size"])
        result[key] = adherence(sample_prompts(pipe, prompts)[0], truth)
    return result


def race_section(s: dict, root: Path, ae_run: Path, classifier, threads: int) -> dict:
    from unnoise.data.landscapes import render_landscapes
    from unnoise.pipeline import Pipeline

    reference = render_landscapes(range(s["n_fd"]), s["size"], "test", seed=0)["images"]
    floor = render_landscapes(range(s["n_fd"]), s["size"], "test", seed=1)["images"]
    race = {"fd_floor_real_vs_real": fd(classifier, floor, reference), "n_fd": s["n_fd"],
            "budget_seconds": s["race_seconds"]}
    unet = {"model": {"network_options": {"base_channels": s["unet_channels"]}}}
    data = {"data": {"options": {"size": s["size"], "n": s["n_train"]}}}
    for name, preset, extra in (("latent", "landscapes-ldm", {"model": {"codec": str(ae_run)}}),
                                ("pixel", "landscapes-pixel", {})):
        run = root / name
        config = preset_config(preset, merge(common_overrides(s, threads), data, unet, extra))
        trained = train_for(config, run, s["race_seconds"])
        race[name] = {**trained, **evaluate_text_run(Pipeline.load(run, device="cpu"), s, classifier, reference)}
    race["fd_ratio_latent_to_pixel"] = round(race["latent"]["fd"] / max(race["pixel"]["fd"], 1e-12), 4)
    race["speedup_per_image"] = round(race["pixel"]["seconds_per_image"] / race["latent"]["seconds_per_image"], 3)
    return race


def hd_section(s: dict, root: Path, threads: int) -> dict:
    """An f = 8 autoencoder and a latent U-Net at 128 px, each for hd_seconds; PSNR and seconds per image."""
    from unnoise.eval.reconstruction import reconstruction_metrics
    from unnoise.pipeline import Pipeline

    data = {"data": {"options": {"size": 128, "n": min(s["n_train"], 1000)}}}
    ae_overrides = merge(common_overrides(s, threads), data,
                         {"model": {"network_options": {"factor": 8, "channels": s["ae_channels"]}}})
    ae = train_for(preset_config("landscapes-ae", ae_overrides), root / "hd-ae", s["hd_seconds"])
    pipe = Pipeline.load(root / "hd-ae", device="cpu")
    x = heldout_images("landscapes", 128, 32)
    metrics = reconstruction_metrics(x, pipe.decode(pipe.encode(x)).clamp(-1, 1))
    unet = {"model": {"codec": str(root / "hd-ae"), "network_options": {"base_channels": s["unet_channels"]}}}
    latent = train_for(preset_config("landscapes-ldm", merge(common_overrides(s, threads), data, unet)),
                       root / "hd-ldm", s["hd_seconds"])
    prompts, truth = prompts_of("test", 8, 128)
    samples, seconds = sample_prompts(Pipeline.load(root / "hd-ldm", device="cpu"), prompts)
    return {"size": 128, "f": 8, "latent_shape": list(pipe.codec.latent_shape((3, 128, 128))),
            "autoencoder": {"psnr": round(metrics["psnr"], 3), "ssim": round(metrics["ssim"], 4), **ae},
            "latent": {**latent, "seconds_per_image": round(seconds, 4), "adherence_seen_8": adherence(samples, truth)}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="32 px and small budgets: a few minutes")
    parser.add_argument("--threads", type=int, default=0, help="train.threads of every run (0: auto)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this directory")
    parser.add_argument("--sections", default="autoencoder,race,hd", help="comma-separated sections to run")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        root = args.keep or Path(temporary)
        classifier = train_classifier(s["size"], s["classifier_steps"])
        report: dict = {"settings": {**s, "quick": args.quick}}
        ae_section, ae_run = autoencoder_section(s, root, classifier, args.threads)
        report["autoencoder"] = ae_section
        report["race"] = race_section(s, root, ae_run, classifier, args.threads) if "race" in sections else None
        report["hd"] = hd_section(s, root, args.threads) if "hd" in sections else None
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=1) if args.json else report)


if __name__ == "__main__":
    main()
