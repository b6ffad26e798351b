"""ControlNet's "sudden convergence": control adherence of samples over training steps, per control kind.

A frozen shapes base run (configs/shapes.yaml; trained here first when --base is not given) gets a ControlNet
per control kind (configs/shapes-control.yaml, `model.control_kind` edges | sketch | segmentation), trained
through the generic trainer. Every --every steps the EMA model samples once from each of the controls of
--n held-out images (the "test" split: another random stream than training) and their adherence is measured
without any learned model:
  edges         F1 between the Canny edges of the sample and the control edges (1-pixel tolerance)
  sketch        F1 between the sketch of the sample and the control sketch (1-pixel tolerance)
  segmentation  mean IoU (pooled over the images, averaged over the classes) between the sample's colour
                classes (read back from its pixels) and the control map
Step 0 is the base model itself (the control run with no control, exactly the base): the adherence a
sample reaches by chance. The paper's users report that adherence stays near chance for a long time and then
jumps; the JSON gives the curve and the first evaluated step at or above 0.5. Without --quick (32x32), the FD
of the final controlled samples and of the base's against the held-out renders (the shapes classifier's
features) is reported too.

    python benchmarks/controlnet.py --json [--kinds edges sketch segmentation] [--base RUN]
        [--out runs/controlnet] [--steps 3000] [--every 100] [--n 64]
    python benchmarks/controlnet.py --quick --json       # a tiny 16x16 base and short runs: a smoke test

Writes OUT/adherence.png (the curves) and OUT/grid_KIND.png (each row: a held-out control, then samples
from it at the end of training). Prints {"kinds": {KIND: {"metric", "curve": [[step, value], ...],
"chance", "final", "crosses_half_at"[, "fd_base", "fd_controlled", "fd_ratio"]}}, "settings", "seconds"}.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

SEED = 40_000
KIND_METRICS = {"edges": "edge_f1", "sketch": "sketch_f1", "segmentation": "mean_iou"}
QUICK_DATA = ["data.options.size=16", "data.options.n=2000"]
QUICK_BASE = ["model.network_options.base_channels=16", "model.network_options.channel_mult=[1,2]",
              "model.network_options.attention_resolutions=[]", "train.steps=400", "train.batch_size=32",
              "train.lr=0.002", "train.warmup_steps=20"]
QUICK_SAMPLE = ["sample.steps=6", "sample.n=8"]
COLOURS = {"edges": (31, 70, 140), "sketch": (200, 90, 30), "segmentation": (40, 150, 60)}


def overrides(args, *extra) -> list[str]:
    quiet = ["train.checkpoint_every=0", "train.log_every=50", "train.threads=1"]
    return [*(QUICK_DATA + QUICK_SAMPLE if args.quick else []), *quiet, *extra]


def ensure_base(args) -> Path:
    """The base run given, or the shapes preset's run in OUT/base (trained there unless it has a checkpoint)."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    if args.base is not None:
        return args.base
    run = args.out / "base"
    if not (run / "checkpoint").exists():
        settings = overrides(args, *(QUICK_BASE if args.quick else []), "train.sample_every=0")
        train_run(config_from_dict(apply_overrides(preset("shapes"), settings)), run, preview=False)
    return run


def held_out(kind: str, config, n: int):
    """The held-out images (n, 3, S, S) and their condition {"control": part} (the "test" split of the data)."""
    from unnoise.conditions import ControlCondition
    from unnoise.data import load_dataset

    options = {**config.data.options, "split": "test", "n": n}
    dataset = load_dataset(config.data.name, **options)
    condition = ControlCondition(kind, tuple(dataset.x.shape[1:]), dataset)
    return dataset, {"control": condition.from_batch({"x": dataset.x, "index": torch.arange(n)})}


def adherence(kind: str, samples: torch.Tensor, dataset, controls: torch.Tensor) -> float:
    """The mean adherence of samples (n, 3, S, S) in [-1, 1] to their controls (n, C, S, S) (see the docstring)."""
    from unnoise.control import canny, edge_f1, sketch
    from unnoise.control.segmentation import analyzed_classes, dataset_classes, palette_of, pooled_mean_iou

    if kind == "edges":
        return float(edge_f1(canny(samples), controls).mean())
    if kind == "sketch":
        return float(edge_f1(sketch(samples), controls).mean())
    name = dataset.name
    target = dataset_classes(dataset.x, torch.arange(len(dataset.x)), dataset)
    return pooled_mean_iou(analyzed_classes(samples, name), target, len(palette_of(name)))


def sample(denoiser, config, cond, n: int) -> torch.Tensor:
    from unnoise.pipeline import sample_run

    return sample_run(denoiser, config, n=n, seed=SEED, cond=cond).clamp(-1, 1)


def train_kind(kind: str, base: Path, args) -> dict:
    """Train one control kind, evaluating every args.every steps; the curve starts with the base (step 0)."""
    from unnoise.pipeline import Pipeline
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.load import read_run_config
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    run = args.out / kind
    if (run / "config.json").is_file():  # a run of an earlier call: replaced
        shutil.rmtree(run)
    dataset, cond = held_out(kind, read_run_config(base), args.n)
    controls = cond["control"]["images"][:, 0]
    curve = []

    def evaluate(denoiser, step: int) -> None:
        config = read_run_config(run)
        curve.append([step, adherence(kind, sample(denoiser, config, cond, args.n), dataset, controls)])
        print(f"{kind} step {step}: {KIND_METRICS[kind]} {curve[-1][1]:.3f}", file=sys.stderr, flush=True)

    settings = overrides(args, f"model.init_from.run={base}", f"model.control_kind={kind}",
                         f"train.steps={args.steps}", f"train.sample_every={args.every}")
    train_run(config_from_dict(apply_overrides(preset("shapes-control"), settings)), run, preview=evaluate)
    pipe = Pipeline.load(run, device="cpu")
    base_samples = sample(pipe.denoiser, pipe.config, None, args.n)  # no control: the base, bit for bit
    final = sample(pipe.denoiser, pipe.config, cond, args.n)
    curve = [[0, adherence(kind, base_samples, dataset, controls)], *curve,
             [args.steps, adherence(kind, final, dataset, controls)]]
    write_grid(controls[:6], [sample_rows(pipe, cond, seed) for seed in (1, 2, 3)], args.out / f"grid_{kind}.png")
    crossing = next((step for step, value in curve if value >= 0.5), None)
    return {"metric": KIND_METRICS[kind], "curve": [[s, round(v, 4)] for s, v in curve],
            "chance": round(curve[0][1], 4),
            "final": round(curve[-1][1], 4), "crosses_half_at": crossing,
            **({} if args.quick else fd_against_real(dataset.x, base_samples, final))}


def fd_against_real(real: torch.Tensor, base: torch.Tensor, controlled: torch.Tensor) -> dict:
    """FD (the shapes classifier's features) of the base's and the controlled model's samples against the
    held-out renders, and their ratio (the issue's target: at most 1.1); equal sample sizes, so equal bias."""
    from unnoise.eval.features import extractor_for
    from unnoise.eval.metrics import fd

    features = extractor_for("shapes").features
    real_f = features(real).double()
    base_fd, control_fd = fd(real_f, features(base).double()), fd(real_f, features(controlled).double())
    return {"fd_base": round(base_fd, 3), "fd_controlled": round(control_fd, 3),
            "fd_ratio": round(control_fd / base_fd, 3)}


def sample_rows(pipe, cond, seed: int) -> torch.Tensor:
    from unnoise.conditions import slice_condition
    from unnoise.pipeline import SampleRequest

    return pipe.sample(SampleRequest(n=6, seed=SEED + 100 * seed, cond=slice_condition(cond, slice(0, 6))))


def write_grid(controls: torch.Tensor, samples: list[torch.Tensor], path: Path) -> None:
    """Rows: a control (grey or colour, in [0, 1]) then its samples (in [-1, 1]), 4x enlarged."""
    from PIL import Image

    controls = controls.expand(-1, 3, -1, -1) if controls.shape[1] == 1 else controls
    columns = [controls] + [(s.clamp(-1, 1) + 1) / 2 for s in samples]
    rows = torch.cat([torch.cat(list(column_row), dim=2) for column_row in zip(*columns)], dim=1)  # (3, H*n, W*k)
    picture = (rows.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    image = Image.fromarray(picture)
    image.resize((image.width * 4, image.height * 4), Image.NEAREST).save(path)


def write_plot(results: dict, path: Path, width: int = 640, height: int = 360) -> None:
    """Adherence (0..1) against step, one line per kind, the 0.5 level dotted."""
    from PIL import Image, ImageDraw

    margin, picture = 40, Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    last = max(step for r in results.values() for step, _ in r["curve"]) or 1
    def point(step, value):  # noqa: E306
        return margin + step / last * (width - 2 * margin), height - margin - value * (height - 2 * margin)
    draw.rectangle([margin, margin, width - margin, height - margin], outline=(160, 160, 160))
    half = point(0, 0.5)[1]
    for x in range(margin, width - margin, 8):
        draw.point((x, half), fill=(120, 120, 120))
    for i, (kind, r) in enumerate(results.items()):
        draw.line([point(s, v) for s, v in r["curve"]], fill=COLOURS[kind], width=2)
        draw.text((margin + 8, margin + 6 + 14 * i), f"{kind} ({r['metric']})", fill=COLOURS[kind])
    draw.text((margin, height - margin + 8), "step 0", fill=(0, 0, 0))
    draw.text((width - margin - 70, height - margin + 8), f"step {last}", fill=(0, 0, 0))
    draw.text((4, height // 2), "0.5", fill=(0, 0, 0))
    picture.save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KIND_METRICS), choices=list(KIND_METRICS))
    parser.add_argument("--base", type=Path, help="a trained shapes run (default: train the preset into OUT/base)")
    parser.add_argument("--out", type=Path, default=Path("runs/controlnet"))
    parser.add_argument("--steps", type=int, help="control training steps per kind (default 3000; quick 150)")
    parser.add_argument("--every", type=int, help="evaluate every this many steps (default 100; quick 50)")
    parser.add_argument("--n", type=int, help="held-out controls per evaluation (default 64; quick 16)")
    parser.add_argument("--quick", action="store_true", help="16x16 tiny base, short runs (a few minutes)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    args.steps = args.steps or (150 if args.quick else 3000)
    args.every = args.every or (50 if args.quick else 100)
    args.n = args.n or (16 if args.quick else 64)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    base = ensure_base(args)
    results = {kind: train_kind(kind, base, args) for kind in args.kinds}
    write_plot(results, args.out / "adherence.png")
    report = {"kinds": results, "settings": {"quick": args.quick, "steps": args.steps, "every": args.every,
                                             "n": args.n, "base": str(base)},
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
