"""Sample-quality race on the built-in digits: our default recipe against the standard diffusers recipe,
at the same training budget in images seen.

(a) ours: the `digits` preset (the `make demo` recipe: residual MLP, EDM preconditioning, log-normal
    noise levels, EMA), trained on the train split, sampled with the default `auto` sampler;
(b) diffusers: `UNet2DModel` of similar size, `DDPMScheduler` (epsilon prediction, linear betas
    1e-4..0.02, 1000 steps), AdamW at 1e-4 with the settings of diffusers' train_unconditional example
    (betas 0.95/0.999, weight decay 1e-6, cosine schedule with 500 warm-up steps, gradient clipping at 1,
    EMA with power 3/4), sampled with `DDIMScheduler` (eta 0) at the requested number of steps.

Both train on the digits' train split (1,500 images) for --steps steps of --batch images. Each model
draws --n samples per NFE (10, 20, 50) from per-sample seeds; the score is the Frechet distance on the
digit classifier's features (unnoise.eval.features) against the 297 held-out test digits.

    python benchmarks/quality_vs_diffusers.py [--json] [--steps 3000] [--batch 128] [--n 2000]
        [--runs-dir runs/race]

Both trained models are kept in --runs-dir (ours as an unnoise run, theirs with `save_pretrained` plus
`race.json` holding its training settings and seconds) and reused by the next call with the same
--steps and --batch, so a rerun only samples and scores (the JSON says which were reused). Every
call also writes its samples there (`samples-ours.safetensors`, `samples-diffusers.safetensors`, one
tensor per NFE) for rescoring with another extractor.

Prints {"ours": {NFE: fd}, "diffusers": {NFE: fd}, "images_seen", "train_seconds": {...}, ...}.
Targets (issue 6): ours at NFE 10 beats diffusers at NFE 50; ours <= 0.5x diffusers at equal NFE.
Needs the bench extra (diffusers). About 45 minutes on 2 cores, most of it training the diffusers U-Net;
a rerun that reuses both models takes about 10.
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

NFES = (10, 20, 50)
SAMPLE_SEED = 10_000
DIFFUSERS_WIDTHS = (64, 128)  # 2.79M parameters with one block per level, vs our MLP's 2.47M


def train_ours(steps: int, batch: int, run_dir: Path) -> dict:
    """Our run in run_dir, trained there unless a finished run with the same steps and batch is present."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.training import train_run as train
    from unnoise.run.presets import preset

    reused = _reused_record(run_dir, steps, batch, run_dir / "checkpoint" / "ema.safetensors")
    if reused:
        return reused

    overrides = [f"train.steps={steps}", f"train.batch_size={batch}", "data.options.split=train",
                 f"train.sample_every={steps}", f"train.checkpoint_every={steps}"]
    config = config_from_dict(apply_overrides(preset("digits"), overrides))
    t0 = time.perf_counter()
    train(config, run_dir)
    return _write_record(run_dir, steps, batch, time.perf_counter() - t0)


def _reused_record(run_dir: Path, steps: int, batch: int, artifact: Path) -> dict | None:
    """The training record in run_dir, marked reused, when it matches steps and batch and the trained
    model (artifact) is there; else None."""
    record = run_dir / "race.json"
    if not (record.is_file() and artifact.exists()):
        return None
    saved = json.loads(record.read_text())
    return {**saved, "reused": True} if (saved.get("steps"), saved.get("batch")) == (steps, batch) else None


def _write_record(run_dir: Path, steps: int, batch: int, seconds: float, **extra) -> dict:
    record = {"steps": steps, "batch": batch, "seconds": round(seconds, 1), **extra}
    (run_dir / "race.json").write_text(json.dumps(record))
    return {**record, "reused": False}


def sample_ours(run_dir: Path, n: int) -> dict[int, torch.Tensor]:
    from unnoise.pipeline import Pipeline, SampleRequest

    pipe = Pipeline.load(run_dir)
    return {nfe: pipe.sample(SampleRequest(n=n, seed=SAMPLE_SEED, sampler="auto", nfe=nfe)) for nfe in NFES}


def diffusers_model():
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=DIFFUSERS_WIDTHS, layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def train_diffusers(images: torch.Tensor, steps: int, batch: int, seed: int = 0):
    from diffusers_recipe import DiffusersRecipe

    from unnoise.run.progress import Progress

    torch.manual_seed(seed)
    recipe = DiffusersRecipe(diffusers_model(), images, steps, batch, seed)
    progress, t0 = Progress(steps, "diffusers"), time.perf_counter()
    for step in range(steps):
        progress.update(step + 1, loss=recipe.step())
    return recipe.ema_model(), recipe.scheduler, time.perf_counter() - t0


def diffusers_run(images: torch.Tensor, steps: int, batch: int, run_dir: Path):
    """(model, scheduler, training record): loaded from run_dir when it holds the same steps and batch,
    else trained with `train_diffusers` and saved there."""
    import diffusers

    reused = _reused_record(run_dir, steps, batch, run_dir / "unet")
    if reused:
        model = diffusers.UNet2DModel.from_pretrained(run_dir / "unet").eval()
        return model, diffusers.DDPMScheduler.from_pretrained(run_dir / "scheduler"), reused
    model, scheduler, seconds = train_diffusers(images, steps, batch)
    model.save_pretrained(run_dir / "unet")
    scheduler.save_pretrained(run_dir / "scheduler")
    return model, scheduler, _write_record(run_dir, steps, batch, seconds, diffusers=diffusers.__version__)


@torch.no_grad()
def sample_diffusers(model, train_scheduler, n: int, chunk: int = 500) -> dict[int, torch.Tensor]:
    from diffusers import DDIMScheduler

    out = {}
    for nfe in NFES:
        scheduler = DDIMScheduler.from_config(train_scheduler.config)
        scheduler.set_timesteps(nfe)
        chunks = []
        for start in range(0, n, chunk):
            x = torch.stack([torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(SAMPLE_SEED + i))
                             for i in range(start, min(n, start + chunk))])
            for t in scheduler.timesteps:
                x = scheduler.step(model(x, t).sample, t, x, eta=0.0).prev_sample
            chunks.append(x)
        out[nfe] = torch.cat(chunks)
    return out


def frechet_scores(samples: dict[int, torch.Tensor]) -> dict[str, float]:
    from unnoise.data import load_dataset
    from unnoise.eval.features import extractor_for
    from unnoise.eval.metrics import fd

    extractor = extractor_for("digits")
    with torch.no_grad():
        real = extractor.features(load_dataset("digits", split="test").x).double()
        return {str(nfe): round(fd(real, extractor.features(x).double()), 2) for nfe, x in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/race"),
                        help="where both trained models and the samples are kept (reused when they match)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from unnoise.data import load_dataset

    run_dir, their_dir = args.runs_dir / "ours", args.runs_dir / "diffusers"
    their_dir.mkdir(parents=True, exist_ok=True)
    ours_train = train_ours(args.steps, args.batch, run_dir)
    t0 = time.perf_counter()
    ours_samples = sample_ours(run_dir, args.n)
    ours_sample_seconds = time.perf_counter() - t0
    save_samples(ours_samples, args.runs_dir / "samples-ours.safetensors")
    ours = frechet_scores(ours_samples)

    model, scheduler, theirs_train = diffusers_run(load_dataset("digits", split="train").x, args.steps,
                                                   args.batch, their_dir)
    t0 = time.perf_counter()
    their_samples = sample_diffusers(model, scheduler, args.n)
    theirs_sample_seconds = time.perf_counter() - t0
    save_samples(their_samples, args.runs_dir / "samples-diffusers.safetensors")
    theirs = frechet_scores(their_samples)

    result = {
        "ours": ours, "diffusers": theirs, "images_seen": args.steps * args.batch,
        "train_seconds": {"ours": ours_train["seconds"], "diffusers": theirs_train["seconds"]},
        "reused_models": {"ours": ours_train["reused"], "diffusers": theirs_train["reused"]},
        "sample_seconds": {"ours": round(ours_sample_seconds, 1), "diffusers": round(theirs_sample_seconds, 1)},
        "ratio_at_equal_nfe": {k: round(ours[k] / theirs[k], 3) for k in ours},
        "ours_nfe10_beats_diffusers_nfe50": ours["10"] < theirs["50"],
        "params": {"ours": _param_count(run_dir), "diffusers": sum(p.numel() for p in model.parameters())},
        "setup": {"steps": args.steps, "batch": args.batch, "n": args.n, "threads": args.threads,
                  "reference": "digits test split (297)", "extractor": "digits-classifier",
                  "ours_sampler": "auto", "diffusers_sampler": "DDIMScheduler eta=0", "runs_dir": str(args.runs_dir)},
    }
    print(json.dumps(result))
    if not args.json:
        ok = result["ours_nfe10_beats_diffusers_nfe50"] and max(result["ratio_at_equal_nfe"].values()) <= 0.5
        print("targets met" if ok else "targets NOT met", file=sys.stderr)
    return 0


def save_samples(samples: dict[int, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({str(nfe): x.contiguous() for nfe, x in samples.items()}, str(path))


def _param_count(run_dir: Path) -> int:
    from unnoise.pipeline import Pipeline

    return sum(p.numel() for p in Pipeline.load(run_dir).denoiser.parameters())


if __name__ == "__main__":
    sys.exit(main())
