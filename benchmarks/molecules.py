"""E(3)-equivariant diffusion on QM9 (EDM for molecules): train the qm9-noh and qm9 presets for a fixed CPU
budget through the library's own path (run/training.train_run), and the same for a non-equivariant baseline
of equal size (nn/atom_transformer.py: a transformer on raw coordinates, same loop and sampler), sample
through the Pipeline and report the field's metrics (eval/molecules.py: atom and molecule stability, RDKit
validity, uniqueness, novelty against the run's training molecules), with molecule stability's learning curve.

    python benchmarks/molecules.py --json                  # 60 minutes training per variant, 1,000 samples
    python benchmarks/molecules.py --quick --json          # 2,000 training molecules, ~2 minutes per variant
    ... --plot curves.png                                  # also the learning curves as a PNG
    ... --properties alpha,gap                             # also the property-conditioning protocol
    python benchmarks/molecules.py --full --json           # a GPU: 10,000 samples, the reference's network
                                                           # size (256 x 9), 8 hours per variant

Protocol. Each variant's step budget is set once: the run trains `calibration` steps (inside the learning-
rate warm-up, so the schedule does not yet depend on the total), its seconds per step give the steps that
fit in --minutes, and it resumes to that many steps, stopping at `curve` evenly spaced points to evaluate
`curve_samples` molecules (the learning curve); the last point evaluates --samples molecules. Samples use
seeds 0..n-1, atom counts drawn from the training histogram. Needs rdkit and qm9pack.

Prints one JSON object:
  {"config", "variants": {"noh"|"h"|"noh-baseline"|"h-baseline": {"preset", "network", "parameters",
      "train_steps", "train_seconds", "metrics": {"atom_stability", "molecule_stability", "validity", "uniqueness", "novelty", ...},
      "curve": [{"step", "atom_stability", "molecule_stability", "validity"}, ...], "sample_seconds"}},
   "properties": {"alpha"|...: {"mae", "reference": {"naive", "atoms", "data"}, "train_steps", ...}},
   "targets", "wall_seconds"}

Property conditioning (--properties, eval/molecule_properties.py): the property-conditional model trains on
the first half of the training split, an EGNN property predictor on the second; molecules are generated for
(atom count, value) pairs drawn from the first half, and the MAE between requested and predicted values is
compared with the naive (shuffled values), #atoms (value from the atom count) and data references.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from unnoise.eval.molecules import evaluate_molecule_run
from unnoise.run.build import build_denoiser
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.load import read_run_config
from unnoise.run.presets import preset
from unnoise.run.threads import apply_threads
from unnoise.run.training import train_run

STANDARD = dict(minutes=60.0, limit=0, hidden=64, depth=4, calibration=20, warmup=100, samples=1000,
                curve=4, curve_samples=200, sampler="heun", sample_steps=50, property_variant="h",
                predictor_steps=3000, property_samples=1000, guidance=1.0)
QUICK = dict(minutes=1.5, limit=2000, hidden=32, depth=3, calibration=10, warmup=20, samples=64,
             curve=2, curve_samples=32, sampler="heun", sample_steps=25, property_variant="noh",
             predictor_steps=200, property_samples=64, guidance=1.0)
FULL = dict(minutes=480.0, limit=0, hidden=256, depth=9, calibration=20, warmup=100, samples=10000,
            curve=8, curve_samples=1000, sampler="heun", sample_steps=100, property_variant="h",
            predictor_steps=20000, property_samples=10000, guidance=1.0)
VARIANTS = {"noh": "qm9-noh", "h": "qm9", "noh-baseline": "qm9-noh", "h-baseline": "qm9"}
TARGETS = {"noh": {"validity": 0.9, "uniqueness": 0.9}, "h": {"atom_stability": 0.95},
           "baseline": "each equivariant variant beats its -baseline on every metric",
           "property": "mae below the #atoms reference"}
HEADS = 4


def parameters(network: str, options: dict) -> int:
    from unnoise.nn import build_network

    return sum(p.numel() for p in build_network(network, options).parameters())


def matched_width(cfg: dict, num_features: int) -> int:
    """The baseline transformer's width (a multiple of its heads) whose parameter count is closest to the
    EGNN's: the two networks are compared at equal size."""
    target = parameters("egnn", {"num_features": num_features, "hidden": cfg["hidden"], "depth": cfg["depth"]})
    widths = range(HEADS, 8 * cfg["hidden"] + 1, HEADS)
    def size(width: int) -> int:
        return parameters("atom_transformer", {"num_features": num_features, "width": width, "depth": cfg["depth"],
                                               "heads": HEADS})
    return min(widths, key=lambda width: abs(size(width) - target))


def network_sets(name: str, cfg: dict) -> list[str]:
    """The network overrides of a variant: the preset's EGNN resized, or the baseline at equal size."""
    if not name.endswith("-baseline"):
        return [f"model.network_options.hidden={cfg['hidden']}", f"model.network_options.depth={cfg['depth']}"]
    num_features = 6 if name.startswith("h") else 5  # one-hot types + charge, with or without H
    options = {"width": matched_width(cfg, num_features), "depth": cfg["depth"], "heads": HEADS}
    return ["model.network=atom_transformer", f"model.network_options={json.dumps(options)}"]


def run_config(name: str, cfg: dict, steps: int, threads: int, extra: tuple = ()):
    """The variant's preset resized by `cfg` (and `extra` overrides): the benchmark's only changes to the
    shipped presets."""
    sets = [*network_sets(name, cfg), *extra, f"train.steps={steps}", f"train.warmup_steps={cfg['warmup']}",
            f"train.threads={threads}", "train.sample_every=0", "train.checkpoint_every=0",
            "train.log_every=1000000", f"sample.sampler={cfg['sampler']}", f"sample.steps={cfg['sample_steps']}"]
    if cfg["limit"]:
        sets.append(f"data.options.limit={cfg['limit']}")
    return config_from_dict(apply_overrides(preset(VARIANTS[name]), sets), where=f"variant {name}")


def evaluate(run_dir: Path, n: int) -> dict:
    """The metrics of n molecules sampled from the run with its own sampler and budget (seeds 0..n-1)."""
    return evaluate_molecule_run(run_dir, n=n, seed=0, device="auto", outputs=False)


def point(step: int, metrics: dict) -> dict:
    return {"step": step, **{k: metrics[k] for k in ("atom_stability", "molecule_stability", "validity")}}


def budgeted_marks(name: str, cfg: dict, threads: int, run_dir: Path, extra: tuple = (), curve: int = 1):
    """Train `calibration` steps, then yield (step, summary, seconds) at `curve` evenly spaced marks up to
    the steps that fit in cfg["minutes"] (resuming the run); the first item carries the seconds per step."""
    summary = train_run(run_config(name, cfg, cfg["calibration"], threads, extra), run_dir, preview=False)
    per_step = summary["seconds"] / cfg["calibration"]  # the trainer's own clock: data loading left out
    total = max(cfg["calibration"] + 1, int(cfg["minutes"] * 60 / per_step))
    marks = sorted({max(cfg["calibration"] + 1, round(total * k / curve)) for k in range(1, curve + 1)})
    for mark in marks:
        begin = time.perf_counter()
        summary = train_run(run_config(name, cfg, mark, threads, extra), run_dir, resume=True, preview=False)
        yield mark, summary, time.perf_counter() - begin, per_step, mark == marks[-1]


def train_variant(name: str, cfg: dict, threads: int, root: Path) -> dict:
    """Calibrate, train to the budget with the learning curve, evaluate the last point."""
    run_dir = root / name
    curve, train_seconds = [], 0.0
    for mark, summary, seconds, per_step, last in budgeted_marks(name, cfg, threads, run_dir, curve=cfg["curve"]):
        train_seconds += seconds
        if not last:
            curve.append(point(mark, evaluate(run_dir, cfg["curve_samples"])))
    begin = time.perf_counter()
    metrics = evaluate(run_dir, cfg["samples"])
    curve.append(point(mark, metrics))
    config = read_run_config(run_dir)
    return {"preset": VARIANTS[name], "network": config.model.network,
            "parameters": sum(p.numel() for p in build_denoiser(config).net.parameters()),
            "train_steps": summary["steps"],
            "train_seconds": round(train_seconds, 1), "seconds_per_step": round(per_step, 3),
            "sample_seconds": round(time.perf_counter() - begin, 1), "metrics": metrics, "curve": curve}


def property_protocol(prop: str, cfg: dict, threads: int, root: Path) -> dict:
    """EDM's property-conditioning protocol (eval/molecule_properties.py): a property-conditional model on the
    first half of the training split, a predictor on the second; MAE of requested vs predicted values on
    cfg["property_samples"] molecules whose (atom count, value) pairs are drawn from the first half, against
    the naive, #atoms and data reference points."""
    from unnoise.data import load_dataset
    from unnoise.eval.molecule_properties import predict, reference_maes, train_predictor
    from unnoise.pipeline import Pipeline, SampleRequest

    variant, run_dir = cfg["property_variant"], root / f"property-{prop}"
    extra = ("model.conditions=property", f"data.options.properties={prop}", "data.options.half=first")
    for mark, summary, _, per_step, _ in budgeted_marks(variant, cfg, threads, run_dir, extra):
        pass
    options = dict(read_run_config(run_dir).data.options)
    first = load_dataset("qm9", **options)
    second = load_dataset("qm9", **{**options, "half": "second", "properties": ""})
    started = time.perf_counter()
    predictor = train_predictor(second, prop, steps=cfg["predictor_steps"], hidden=cfg["hidden"], depth=cfg["depth"])
    predictor_seconds = time.perf_counter() - started
    pipe = Pipeline.load(run_dir, device="auto")
    pick = torch.randperm(len(first), generator=torch.Generator().manual_seed(0))[: cfg["property_samples"]]
    counts, values = first.atom_mask[pick].sum(1), first.properties[prop][pick].float()
    part = pipe.conditions.get("property").encode(values.unsqueeze(1))
    requested, generated, seed = [], [], 0
    for n in counts.unique().tolist():  # one batch per atom count: the pairs keep p(N, value) of the data
        rows = (counts == n).nonzero().flatten()
        request = SampleRequest(n=len(rows), seed=seed, atoms=int(n), cond={"property": part[rows]},
                                guidance=cfg["guidance"])
        seed += len(rows)
        generated.append(pipe.sample(request))
        requested.append(values[rows])
    x = torch.cat(generated)
    predicted = predict(predictor, x, (x != 0).any(dim=-1))
    mae = float((predicted - torch.cat(requested)).abs().mean())
    return {"property": prop, "preset": VARIANTS[variant], "train_steps": summary["steps"],
            "seconds_per_step": round(per_step, 3), "predictor_steps": predictor["steps"],
            "predictor_seconds": round(predictor_seconds, 1), "samples": len(x), "guidance": cfg["guidance"],
            "mae": mae, "reference": reference_maes(predictor, first, prop, second)}


COLOURS = {"noh": (31, 70, 140), "noh-baseline": (120, 160, 220), "h": (170, 40, 40), "h-baseline": (230, 150, 150)}


def plot_curves(variants: dict, path: Path, width: int = 640, height: int = 360) -> Path:
    """Molecule stability (solid) and atom stability (thin) against the training step, one colour per
    variant, on a [0, 1] axis; a PNG drawn with Pillow."""
    from unnoise.io.files import pillow_draw, pillow_image, save_picture

    margin, picture = 40, pillow_image().new("RGB", (width, height), (255, 255, 255))
    draw = pillow_draw().Draw(picture)
    last = max(point["step"] for v in variants.values() for point in v["curve"])
    def xy(point, key):
        x = margin + point["step"] / last * (width - 2 * margin)
        return x, height - margin - point[key] * (height - 2 * margin)
    draw.rectangle([margin, margin, width - margin, height - margin], outline=(160, 160, 160))
    for row, (name, v) in enumerate(variants.items()):
        colour = COLOURS.get(name, (0, 0, 0))
        for key, line in (("molecule_stability", 3), ("atom_stability", 1)):
            draw.line([xy(point, key) for point in [{"step": 0, key: 0.0}, *v["curve"]]], fill=colour, width=line)
        draw.text((width - margin - 150, margin + 6 + 14 * row), name, fill=colour)
    draw.text((margin, 8), "molecule stability (thick), atom stability (thin); 0 .. 1", fill=(0, 0, 0))
    draw.text((width - margin - 80, height - margin + 8), f"step {last}", fill=(0, 0, 0))
    return save_picture(picture, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small data and model: a few minutes in all")
    mode.add_argument("--full", action="store_true", help="the reference protocol on a GPU (hours)")
    parser.add_argument("--minutes", type=float, help="training budget per variant (default 60; quick 1.5)")
    parser.add_argument("--samples", type=int, help="molecules evaluated at the end (default 1000)")
    parser.add_argument("--variants", default="noh,noh-baseline,h,h-baseline",
                        help="comma-separated: noh (heavy atoms), h (with H), each also as NAME-baseline (a "
                             "non-equivariant transformer on raw coordinates of equal size, same loop)")
    parser.add_argument("--properties", default="",
                        help="comma-separated QM9 properties (e.g. alpha,gap) for the property-conditioning "
                             "protocol (MAE vs the naive and #atoms references); empty: skip it")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: the free cores)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--plot", type=Path, help="also draw the learning curves to this PNG")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL if args.full else STANDARD)
    cfg.update({k: v for k, v in (("minutes", args.minutes), ("samples", args.samples)) if v is not None})
    unknown = [name for name in args.variants.split(",") if name and name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown[0]!r}; valid: {', '.join(VARIANTS)}")
    threads = apply_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        variants = {name: train_variant(name, cfg, threads, root) for name in args.variants.split(",") if name}
        if args.plot is not None and variants:
            plot_curves(variants, args.plot)
        properties = {prop: property_protocol(prop, cfg, threads, root) for prop in args.properties.split(",") if prop}
    result = {"config": {**cfg, "threads": threads, "mode": "quick" if args.quick else "full" if args.full
                         else "standard"}, "variants": variants, "properties": properties, "targets": TARGETS,
              "wall_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
