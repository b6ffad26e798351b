"""Sample-quality race with a real reference, and time to quality: our default recipe against the standard
diffusers recipe at the same number of training images.

(a) ours: the dataset's preset (`shapes`: the EDM U-Net; `digits`: the `make demo` MLP), trained on the
    train split, sampled with the default `auto` sampler;
(b) diffusers: `UNet2DModel` of similar size (parameter counts reported), `DDPMScheduler` (epsilon
    prediction, linear betas 1e-4..0.02, 1000 steps), AdamW at 1e-4 with the settings of diffusers'
    train_unconditional example (betas 0.95/0.999, weight decay 1e-6, cosine schedule with 500 warm-up
    steps, gradient clipping at 1, EMA with power 3/4), sampled with `DDIMScheduler` (eta 0) and with
    `DPMSolverMultistepScheduler` (DPM-Solver++ 2M); the better of the two is reported per NFE.

Race: --n samples per model and NFE (10, 20, 50) from per-sample seeds, Frechet distance on the dataset's
feature classifier (eval/features.py) against the reference: for shapes, --reference fresh renders of the
held-out split (default 10,000); for digits (a sanity row) the 297 test digits, with KID (unbiased, with its
standard error) beside FD. The **floor** is real against real at the same N: held-out images never in the
reference (shapes: a second set of renders; digits: the train split), scored like a model's samples.

Time to quality: both recipes save their EMA weights at the same training steps (--curve-at), each is
scored at NFE 20 with its better sampler (ours: dpmpp_2m or heun; theirs: DDIM or DPM-Solver++ 2M) on
--curve-n samples; the result is the training wall-clock at which ours first reaches diffusers' final FD,
as a fraction of diffusers' total training time (target <= 0.2), and a PNG of both curves.

    python benchmarks/quality_race.py --json [--datasets shapes digits] [--runs-dir runs/quality_race]
    python benchmarks/quality_race.py --json --quick     # minutes: tiny training and sample counts

Everything is kept in --runs-dir (both trained models with their checkpoints, `scores.json` with every
score computed): a rerun with the same settings reuses them, and an interrupted run resumes from there.
Targets: ours at NFE 10 beats theirs at NFE 50; ours <= 0.5x theirs at each equal NFE; time to quality
<= 0.2. Needs the bench extra (diffusers). Full run: about 3 hours for shapes and 1 hour for digits on
2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

NFES = (10, 20, 50)
CURVE_NFE = 20
SAMPLE_SEED, FLOOR_SEED, REFERENCE_SEED = 10_000, 70_000, 90_000
OUR_CURVE_SAMPLERS = ("dpmpp_2m", "heun")
THEIR_SAMPLERS = ("ddim", "dpmpp_2m")


@dataclass
class Race:
    """One dataset's race: our preset, the data both recipes train on, the diffusers network's shape."""
    dataset: str
    preset: str
    data_options: dict
    steps: int
    batch: int
    n: int
    reference_n: int
    curve_at: tuple[int, ...]
    curve_n: int
    their_widths: tuple[int, ...]
    their_blocks: tuple[tuple[str, ...], tuple[str, ...]]
    overrides: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 8, 8) if self.dataset == "digits" else (3, 32, 32)


def races(quick: bool) -> dict[str, Race]:
    """The full races, or --quick ones (tiny training, few samples: a check of the whole path)."""
    shapes = Race("shapes", "shapes", {"split": "train", "objects": "1", "n": 20000}, steps=3600, batch=64, n=5000,
                  reference_n=10_000, curve_at=(150, 300, 600, 1200, 2400, 3600), curve_n=2000,
                  their_widths=(32, 64, 64),
                  their_blocks=(("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                                ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")))
    digits = Race("digits", "digits", {"split": "train"}, steps=3000, batch=128, n=2000, reference_n=297,
                  curve_at=(150, 300, 750, 1500, 3000), curve_n=2000, their_widths=(64, 128),
                  their_blocks=(("DownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "UpBlock2D")))
    if quick:
        for race in (shapes, digits):
            race.steps, race.n, race.curve_n, race.curve_at = 60, 64, 64, (30, 60)
            race.reference_n = min(race.reference_n, 297)
        shapes.overrides = ["model.network_options.base_channels=16"]
        shapes.their_widths = (16, 32, 32)
    return {"shapes": shapes, "digits": digits}


# ---------------------------------------------------------------------------------------------- data


def training_images(race: Race) -> torch.Tensor:
    from unnoise.data import load_dataset

    return load_dataset(race.dataset, **race.data_options).x


def reference_and_floor_images(race: Race, n_floor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, floor) real images, both never trained on and disjoint from each other."""
    from unnoise.data import load_dataset

    if race.dataset == "digits":  # the test split is all the held-out data there is: the floor uses train
        return load_dataset("digits", split="test").x, load_dataset("digits", split="train").x[:n_floor]
    reference = load_dataset("shapes", split="test", objects="1", n=race.reference_n, seed=REFERENCE_SEED).x
    return reference, load_dataset("shapes", split="test", objects="1", n=n_floor, seed=FLOOR_SEED).x


class Scorer:
    """FD (and for digits KID with its standard error) of images against the race's reference."""

    def __init__(self, race: Race):
        from unnoise.eval.features import extractor_for

        self.race = race
        self.extractor = extractor_for(race.dataset)
        reference, floor = reference_and_floor_images(race, max(race.n, race.curve_n))
        self.reference = self.features(reference)
        self.floor_images = floor

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.extractor.features(c.clamp(-1, 1)) for c in x.split(1000)]).double()

    def __call__(self, images: torch.Tensor) -> dict:
        from unnoise.eval.metrics import fd, kid

        f = self.features(images)
        out = {"fd": round(fd(f, self.reference), 3)}
        if self.race.dataset == "digits":
            estimate, stderr = kid(f, self.reference)
            out["kid"], out["kid_stderr"] = round(estimate, 5), round(stderr, 5)
        return out

    def floor(self, n: int) -> dict:
        """Real against real at N = n: the best score n samples can get."""
        return self(self.floor_images[:n])


class ScoreBook:
    """Every score computed, in runs_dir/scores.json, written after each one (a rerun or resume reuses them)."""

    def __init__(self, path: Path, settings: dict):
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.scores = saved.get("scores", {}) if saved.get("settings") == settings else {}
        self.settings = settings

    def get(self, key: str, compute) -> dict:
        if key not in self.scores:
            self.scores[key] = compute()
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"settings": self.settings, "scores": self.scores}, indent=1))
            tmp.replace(self.path)
        return self.scores[key]


# ---------------------------------------------------------------------------------------------- ours


def train_ours(race: Race, run_dir: Path) -> Path:
    """Our preset in run_dir with a checkpoint at every --curve-at step (kept); resumes an interrupted run."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    every = _common_step(race.curve_at)
    overrides = [f"train.steps={race.steps}", f"train.batch_size={race.batch}", "train.sample_every=0",
                 f"train.checkpoint_every={every}", f"train.keep_checkpoints={race.steps // every + 1}",
                 f"train.log_every={every}",
                 *(f"data.options.{k}={v}" for k, v in race.data_options.items()), *race.overrides]
    done = _checkpoint_step(run_dir)
    if done == race.steps:
        return run_dir
    config = config_from_dict(apply_overrides(preset(race.preset), overrides))
    train_run(None if done else config, run_dir, resume=bool(done))
    return run_dir


def _common_step(steps: tuple[int, ...]) -> int:
    from math import gcd

    every = 0
    for s in steps:
        every = gcd(every, s)
    return every


def _checkpoint_step(run_dir: Path) -> int | None:
    from unnoise.run.guard import checkpoint_step

    try:
        return checkpoint_step(run_dir) if (run_dir / "config.json").is_file() else None
    except Exception:
        return None


def our_seconds_at(run_dir: Path, step: int) -> float:
    """Training wall-clock at `step`, from the run's metrics log."""
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("step") == step and "seconds" in record:
            return float(record["seconds"])
    raise SystemExit(f"{run_dir}/metrics.jsonl: no timing logged at step {step}")


def our_pipeline(run_dir: Path, step: int | None = None):
    """Our run's sampling pipeline with the EMA weights of `step` (default: the final ones)."""
    from safetensors.torch import load_file

    from unnoise.pipeline import Pipeline

    pipe = Pipeline.load(run_dir, device="cpu")
    if step is not None:
        pipe.denoiser.net.load_state_dict(load_file(str(run_dir / "history" / f"step_{step:07d}" / "ema.safetensors")))
    return pipe


def sample_ours(pipe, n: int, sampler: str, nfe: int) -> torch.Tensor:
    from unnoise.pipeline import SampleRequest

    return pipe.sample(SampleRequest(n=n, seed=SAMPLE_SEED, sampler=sampler, nfe=nfe))


# ---------------------------------------------------------------------------------------------- theirs


def their_model(race: Race):
    import diffusers

    channels = race.image_shape[0]
    return diffusers.UNet2DModel(
        sample_size=race.image_shape[-1], in_channels=channels, out_channels=channels,
        block_out_channels=race.their_widths, layers_per_block=1, norm_num_groups=min(32, race.their_widths[0]),
        down_block_types=race.their_blocks[0], up_block_types=race.their_blocks[1])


def train_theirs(race: Race, images: torch.Tensor, run_dir: Path, seed: int = 0) -> dict:
    """diffusers' train_unconditional recipe; the EMA weights saved at every --curve-at step with the
    training seconds so far (saving not counted). Returns {step: seconds}; reuses a finished run."""
    from diffusers_recipe import DiffusersRecipe

    from unnoise.run.progress import Progress

    record = run_dir / "race.json"
    if record.is_file():
        return {int(k): v for k, v in json.loads(record.read_text())["seconds_at"].items()}
    torch.manual_seed(seed)
    recipe = DiffusersRecipe(their_model(race), images, race.steps, race.batch, seed,
                             warmup=min(500, race.steps // 10))
    seconds, seconds_at = 0.0, {}
    progress = Progress(race.steps, f"diffusers {race.dataset}")
    for step in range(1, race.steps + 1):
        t0 = time.perf_counter()
        loss = recipe.step()
        seconds += time.perf_counter() - t0
        progress.update(step, loss=loss)
        if step in race.curve_at:
            seconds_at[step] = round(seconds, 1)
            recipe.ema_model().save_pretrained(run_dir / f"step_{step:07d}")
    recipe.scheduler.save_pretrained(run_dir / "scheduler")
    record.write_text(json.dumps({"steps": race.steps, "batch": race.batch, "seconds_at": seconds_at}))
    return seconds_at


def their_model_at(run_dir: Path, step: int):
    import diffusers

    return diffusers.UNet2DModel.from_pretrained(run_dir / f"step_{step:07d}").eval()


@torch.no_grad()
def sample_theirs(model, run_dir: Path, n: int, sampler: str, nfe: int, chunk: int = 500) -> torch.Tensor:
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = DDPMScheduler.from_pretrained(run_dir / "scheduler").config
    scheduler = (DDIMScheduler.from_config(config) if sampler == "ddim" else
                 DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2))
    shape = (model.config.in_channels, model.config.sample_size, model.config.sample_size)
    chunks = []
    for start in range(0, n, chunk):
        scheduler.set_timesteps(nfe)  # resets the multistep solver's history
        x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(SAMPLE_SEED + i))
                         for i in range(start, min(n, start + chunk))])
        for t in scheduler.timesteps:
            output = model(x, t).sample
            x = (scheduler.step(output, t, x, eta=0.0) if sampler == "ddim" else scheduler.step(output, t, x)).prev_sample
        chunks.append(x)
    return torch.cat(chunks)


# ---------------------------------------------------------------------------------------------- the race


def run_race(race: Race, runs_dir: Path, figure: Path | None) -> dict:
    ours_dir, theirs_dir = runs_dir / race.dataset / "ours", runs_dir / race.dataset / "diffusers"
    theirs_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(race).items()}
    book = ScoreBook(runs_dir / race.dataset / "scores.json", json.loads(json.dumps(settings)))
    train_ours(race, ours_dir)
    their_seconds = train_theirs(race, training_images(race), theirs_dir)
    score = Scorer(race)

    ours_final, theirs_final = our_pipeline(ours_dir), their_model_at(theirs_dir, race.steps)
    ours, theirs, their_best = {}, {}, {}
    for nfe in NFES:
        ours[str(nfe)] = book.get(f"ours/final/auto/{nfe}/{race.n}",
                                  lambda: score(sample_ours(ours_final, race.n, "auto", nfe)))
        candidates = {s: book.get(f"theirs/final/{s}/{nfe}/{race.n}",
                                  lambda s=s: score(sample_theirs(theirs_final, theirs_dir, race.n, s, nfe)))
                      for s in THEIR_SAMPLERS}
        their_best[str(nfe)] = min(candidates, key=lambda s: candidates[s]["fd"])
        theirs[str(nfe)] = {**candidates[their_best[str(nfe)]], "all": candidates}
    floor = book.get(f"floor/{race.n}", lambda: score.floor(race.n))
    curve = time_to_quality(race, ours_dir, theirs_dir, their_seconds, score, book)
    result = {
        "ours": ours, "diffusers": theirs, "diffusers_best_sampler": their_best, "floor": floor,
        "images_seen": race.steps * race.batch,
        "ratio_at_equal_nfe": {k: round(ours[k]["fd"] / theirs[k]["fd"], 3) for k in ours},
        "ours_nfe10_beats_diffusers_nfe50": ours["10"]["fd"] < theirs["50"]["fd"],
        "floor_within_10pct_of_theirs": all(floor["fd"] <= 0.1 * theirs[k]["fd"] for k in theirs),
        "params": {"ours": sum(p.numel() for p in ours_final.denoiser.parameters()),
                   "diffusers": sum(p.numel() for p in theirs_final.parameters())},
        "train_seconds": {"ours": our_seconds_at(ours_dir, race.steps), "diffusers": their_seconds[race.steps]},
        "time_to_quality": curve,
        "setup": {**settings, "reference": _reference_name(race), "extractor": f"{race.dataset}-classifier",
                  "ours_sampler": "auto", "diffusers_samplers": list(THEIR_SAMPLERS), "threads": torch.get_num_threads()},
    }
    result["targets_met"] = (result["ours_nfe10_beats_diffusers_nfe50"]
                             and max(result["ratio_at_equal_nfe"].values()) <= 0.5
                             and curve["fraction"] is not None and curve["fraction"] <= 0.2)
    if figure is not None:
        plot_curves(curve, race.dataset, figure)
    return result


def time_to_quality(race: Race, ours_dir: Path, theirs_dir: Path, their_seconds: dict, score, book) -> dict:
    """Both recipes' FD at NFE 20 (better sampler) along training; when ours first reaches their final FD."""
    ours, theirs = [], []
    for step in race.curve_at:
        pipe = our_pipeline(ours_dir, step)
        fds = {s: book.get(f"ours/{step}/{s}/{CURVE_NFE}/{race.curve_n}",
                           lambda s=s: score(sample_ours(pipe, race.curve_n, s, CURVE_NFE)))["fd"]
               for s in OUR_CURVE_SAMPLERS}
        ours.append({"step": step, "seconds": our_seconds_at(ours_dir, step), "fd": min(fds.values()), "all": fds})
        model = their_model_at(theirs_dir, step)
        fds = {s: book.get(f"theirs/{step}/{s}/{CURVE_NFE}/{race.curve_n}",
                           lambda s=s: score(sample_theirs(model, theirs_dir, race.curve_n, s, CURVE_NFE)))["fd"]
               for s in THEIR_SAMPLERS}
        theirs.append({"step": step, "seconds": their_seconds[step], "fd": min(fds.values()), "all": fds})
    target, total = theirs[-1]["fd"], theirs[-1]["seconds"]
    reached = next((p for p in ours if p["fd"] <= target), None)
    return {"ours": ours, "diffusers": theirs, "diffusers_final_fd": target,
            "ours_reaches_it_at_seconds": reached and reached["seconds"],
            "fraction": reached and round(reached["seconds"] / total, 3),
            "note": "the first of ours' checkpoints at or below diffusers' final FD: an upper bound on the time"}


def plot_curves(curve: dict, dataset: str, path: Path, width: int = 640, height: int = 360) -> None:
    """Both FD curves (log scale) against training wall-clock, diffusers' final FD dotted; drawn with Pillow."""
    import math

    from PIL import Image, ImageDraw

    series = {"ours": (31, 70, 140), "diffusers": (200, 90, 30)}
    points = [(p["seconds"], p["fd"]) for name in series for p in curve[name] if p["fd"] > 0]
    x_max = max(x for x, _ in points)
    y_lo, y_hi = (math.log10(min(y for _, y in points)), math.log10(max(y for _, y in points)))
    margin = 48

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        fraction = (math.log10(max(y, 1e-12)) - y_lo) / max(y_hi - y_lo, 1e-12)
        return margin + x / x_max * (width - 2 * margin), height - margin - fraction * (height - 2 * margin)

    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([margin, margin, width - margin, height - margin], outline=(160, 160, 160))
    target_y = to_pixel(0, curve["diffusers_final_fd"])[1]
    for x in range(margin, width - margin, 8):
        draw.line([(x, target_y), (x + 4, target_y)], fill=(120, 120, 120))
    for row, (name, colour) in enumerate(series.items()):
        line = [to_pixel(p["seconds"], p["fd"]) for p in curve[name] if p["fd"] > 0]
        draw.line(line, fill=colour, width=2)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((margin + 8, height - margin - 36 + 14 * row), name, fill=colour)
    draw.text((margin, 8), f"time to quality, {dataset}: FD at NFE {CURVE_NFE} (log scale) "
                           f"{10 ** y_hi:.4g} .. {10 ** y_lo:.4g}; dotted: diffusers' final FD", fill=(0, 0, 0))
    draw.text((margin, height - margin + 8), "0 s", fill=(0, 0, 0))
    draw.text((width - margin - 120, height - margin + 8), f"{x_max:.0f} s training", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def _reference_name(race: Race) -> str:
    if race.dataset == "digits":
        return "digits test split (297); floor: as many train digits"
    return f"{race.reference_n} fresh shapes renders of the held-out split (seed {REFERENCE_SEED}); floor: others"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quick", action="store_true", help="tiny training and sample counts (a path check)")
    parser.add_argument("--datasets", nargs="+", default=["shapes", "digits"], choices=["shapes", "digits"])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/quality_race"))
    parser.add_argument("--figures", type=Path, default=None, help="folder for the curves' PNGs (default --runs-dir)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs_dir = args.runs_dir / "quick" if args.quick else args.runs_dir
    figures = args.figures or runs_dir
    result = {name: run_race(race, runs_dir, figures / f"time_to_quality_{name}.png")
              for name, race in races(args.quick).items() if name in args.datasets}
    result["quick"] = args.quick
    print(json.dumps(result))
    if not args.json:
        for name in args.datasets:
            print(f"{name}: targets {'met' if result[name]['targets_met'] else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
