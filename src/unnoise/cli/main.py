"""`unnoise train | sample | eval | restore | data | demo`: parse flags -> config -> library call. User errors print one line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ..errors import UnnoiseError


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes a run directory")
    from ..run.presets import preset_names

    p.add_argument("--preset", default="digits",
                   help=f"starting config from configs/ ({', '.join(preset_names())})")
    p.add_argument("--config", type=Path, help="starting config file (YAML or JSON), instead of --preset")
    p.add_argument("--data", help="dataset name (digits, shapes, toy2d, tones, imagefolder, audiofolder)")
    p.add_argument("--data-path", help="folder of images or WAV files for --data imagefolder | audiofolder")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", default="runs/train", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. --set train.lr=2e-4 (repeatable)")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sampler", help="auto (grid calibrated on the model for the budget, cached in the run), "
                   "dpmpp_2m, dpmpp_3m, pc_multistep, heun, euler, ddim, ddpm, euler_ancestral, dpmpp_2m_sde, "
                   "langevin_pc, annealed_langevin (default: auto, the most accurate at the budget)")
    p.add_argument("--steps", type=int, help="number of sampler steps (for auto: model calls; default: the run's)")
    p.add_argument("--grid", help="sigma grid: karras, log_snr, ddpm")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample (sample i uses seed + i)")
    p.add_argument("--eta", type=float, help="DDIM stochasticity (0 deterministic, 1 ancestral)")
    p.add_argument("--churn", type=float, help="Heun S_churn (EDM Algorithm 2)")
    p.add_argument("--class", dest="class_label",
                   help="class for class-conditional runs: an index, or a class name (e.g. C4 for tones)")
    p.add_argument("--prompt", help="caption for text-conditional runs")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: none; default: the run's)")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("SIGMA_LO", "SIGMA_HI"),
                   help="guide only where SIGMA_LO < sigma <= SIGMA_HI")
    p.add_argument("--guidance-rescale", type=float, help="guidance rescale phi in [0, 1] (Lin et al. 2024)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path, default=Path("samples.png"),
                   help="PNG grid (a scatter for 2-D data, spectrograms for audio); audio runs also take "
                        "NAME.wav: one WAV per sample (NAME-000.wav, ... for a batch) and the spectrograms NAME.png")
    p.add_argument("--gif", type=Path, help="also write the denoising trajectory as an animated GIF")
    p.add_argument("--save-tensor", type=Path, help="also save the raw samples as .safetensors")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run: sample quality (FD, KID, precision/recall) "
                                    "or, with --nll, bits/dim by the VLB and the ODE")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--nll", action="store_true", help="negative log-likelihood in bits/dim (both estimates)")
    p.add_argument("--n", type=int, help="samples to generate (default 1000), or data points for --nll (256)")
    p.add_argument("--split", help="reference / evaluated split (default: test where the dataset has one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="auto", help="sampler for the generated samples")
    p.add_argument("--steps", type=int, help="sampler steps (default: the run's)")
    p.add_argument("--guidance", type=float, help="class-conditional runs: guidance scale (default: the run's)")
    p.add_argument("--extractor", help="feature extractor: the dataset's classifier (default), or inception")
    p.add_argument("--inception-weights", type=Path,
                   help="local pt_inception-2015-12-05 weights (.pth or .safetensors) for --extractor inception")
    p.add_argument("--batch", type=int, default=128, help="--nll: data points per batch")
    p.add_argument("--vlb-variance", choices=["fixed_large", "fixed_small", "learned"],
                   help="--nll: reverse variance for the bound (default: the model's learned one)")
    p.add_argument("--divergence", default="auto", choices=["auto", "exact", "hutchinson"])
    p.add_argument("--draws", type=int, default=2, help="--nll: Hutchinson probe draws per data point")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path, help="output JSON (default RUN_DIR/eval.json, or eval_nll.json)")


def _add_restore(sub) -> None:
    p = sub.add_parser("restore", help="restore a damaged image with a trained run: inpaint, super-resolve, "
                                       "deblur or colorize; K samples, their mean and an uncertainty map")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--task", required=True, choices=["inpaint", "sr", "deblur", "colorize"])
    p.add_argument("--input", type=Path, required=True, help="the damaged image (PNG/JPEG, L or RGB)")
    p.add_argument("--mask", type=Path, help="inpaint: same size as --input, black = keep, white = fill in")
    p.add_argument("--scale", type=int, help="sr: upscaling factor, 2 or 4 (default: the run's, or 4)")
    p.add_argument("--blur-sigma", type=float, default=1.0, help="deblur: the Gaussian blur's std in pixels")
    p.add_argument("--blur-cutoff", type=float, default=1e-3,
                   help="deblur: frequencies the blur keeps below this gain are left to the prior")
    p.add_argument("--noise-std", type=float, default=0.0,
                   help="std of the measurement's Gaussian noise on [-1, 1] (> 0: method dps or tweedie)")
    p.add_argument("--method", choices=["ddnm", "tweedie", "repaint", "dps", "sr3"],
                   help="default: sr3 for a super-resolution run, ddnm for noiseless, dps for noisy measurements")
    p.add_argument("--zeta", type=float, default=1.0, help="dps: step size")
    p.add_argument("--n", type=int, default=8, help="number of samples K")
    p.add_argument("--steps", type=int, help="sampler steps (default 100; sr3: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample (sample k uses seed + k)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path, default=Path("restored"), help="output directory")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect a dataset folder")
    p.add_argument("action", choices=["check"], help="check: list the files training would skip, and why")
    p.add_argument("folder", type=Path)
    p.add_argument("--size", type=int, default=32, help="training size; shorter images count as too small")
    p.add_argument("--min-size", type=int, help="smallest acceptable short side (default: --size)")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train on built-in digits, then sample a grid")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--steps", type=int, help="training steps (default: the digits preset)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unnoise", description="Diffusion models: train, sample, demo.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    _add_restore(sub)
    _add_data(sub)
    _add_demo(sub)
    return parser


def run_config_from_args(args):
    from ..run.config import apply_overrides, config_from_dict
    from ..run.presets import preset, read_config_file

    d = read_config_file(args.config) if args.config else preset(args.preset)
    if args.data:
        d["data"] = {"name": args.data, "options": {}}
    if args.data_path:
        d.setdefault("data", {}).setdefault("options", {})["path"] = args.data_path
    if args.steps is not None:
        d.setdefault("train", {})["steps"] = args.steps
    if args.batch_size is not None:
        d.setdefault("train", {})["batch_size"] = args.batch_size
    return config_from_dict(apply_overrides(d, args.set), where="config")  # --set wins over everything


def cmd_train(args) -> None:
    from ..run.training import train_run as train

    config = None if args.resume else run_config_from_args(args)
    result = train(config, Path(args.out), resume=args.resume, steps=args.steps if args.resume else None)
    print(f"trained {result['steps']} steps in {result['seconds']:.1f}s; run directory: {args.out}")


def cmd_sample(args) -> None:
    from .sample import sample_command

    sample_command(args)


def cmd_eval(args) -> None:
    if args.n is not None and args.n < 1:
        raise UnnoiseError(f"--n must be >= 1, got {args.n}")
    if args.nll:
        from ..eval.nll import evaluate_nll

        result = evaluate_nll(args.run_dir, n=args.n or 256, seed=args.seed, split=args.split, batch=args.batch,
                              vlb_variance=args.vlb_variance, divergence=args.divergence, draws=args.draws,
                              rtol=args.rtol, atol=args.atol, weights=args.weights)
        out = args.out or Path(args.run_dir) / "eval_nll.json"
    else:
        from ..eval.quality import evaluate_quality

        if args.inception_weights is not None:
            from ..eval.features import register_extractor
            from ..eval.inception import inception_extractor

            register_extractor("inception", lambda: inception_extractor(args.inception_weights))
        result = evaluate_quality(args.run_dir, n=args.n or 1000, seed=args.seed, sampler=args.sampler,
                                  steps=args.steps, split=args.split,
                                  extractor=args.extractor or ("inception" if args.inception_weights else None),
                                  weights=args.weights, guidance=args.guidance)
        out = args.out or Path(args.run_dir) / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def cmd_restore(args) -> None:
    from .restore import restore_command

    summary = restore_command(args)
    print(json.dumps(summary))
    print(f"wrote {summary['n']} restorations, their mean and std map to {args.out}")


def cmd_data(args) -> int:
    from ..data.imagefolder import check_folder

    if not args.folder.is_dir():
        raise UnnoiseError(f"no such directory: {args.folder}")
    total, problems = check_folder(args.folder, args.size if args.min_size is None else args.min_size)
    for path, problem in problems:
        print(f"{path}: {problem}")
    print(f"checked {total} files: {total - len(problems)} usable, {len(problems)} with problems")
    return 1 if problems else 0


def cmd_demo(args) -> None:
    from .sample import sample_to_files
    from ..run.config import config_from_dict
    from ..run.training import train_run as train
    from ..run.presets import preset

    d = preset("digits")
    if args.steps is not None:
        d = {**d, "train": {**d["train"], "steps": args.steps}}
    t0 = time.perf_counter()
    result = train(config_from_dict(d), args.out)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    grid = args.out / "demo_samples.png"
    sample_to_files(args.out, n=100, seed=0, out=grid, gif=args.out / "demo_trajectory.gif")
    print(json.dumps({"run_dir": str(args.out), "grid": str(grid), "trajectory": str(args.out / "demo_trajectory.gif"),
                      "train_seconds": round(train_seconds, 1), "sample_seconds": round(time.perf_counter() - t1, 1),
                      "steps": result["steps"]}))
    print(f"demo done: samples in {grid}, trajectory in {args.out / 'demo_trajectory.gif'}")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "restore": cmd_restore, "data": cmd_data, "demo": cmd_demo}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        status = COMMANDS[args.command](args)
    except UnnoiseError as exc:
        print(f"unnoise {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unnoise {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
