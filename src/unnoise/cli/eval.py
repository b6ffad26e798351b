"""`unnoise eval RUN`: sample quality (FD, KID, precision/recall) against held-out data or a folder of images
(--reference; a diffusers folder needs one), or with --nll the negative log-likelihood in bits/dim by the
variational bound and the probability-flow ODE."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnnoiseError
from .common import add_device, check_number, check_output

SUMMARY = ("evaluate a trained run: sample quality (FD, KID, precision/recall) or, with --nll, bits/dim by "
           "the VLB and the ODE")


def add_parser(sub) -> None:
    from ..sample import SAMPLERS

    p = sub.add_parser("eval", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--nll", action="store_true", help="negative log-likelihood in bits/dim (both estimates); text "
                                                      "runs: held-out bits per character (ELBO bound, or exact AR)")
    p.add_argument("--n", type=int, help="samples to generate (default 1000), or data points for --nll (256)")
    p.add_argument("--split", help="reference / evaluated split (default: test where the dataset has one; text "
                                   "runs: heldout, the held-out texts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", help=f"sampler for the generated samples ({', '.join(SAMPLERS)}; default: the "
                                     "run's sample.sampler)")
    p.add_argument("--nfe", type=int, help="budget in model calls (see `unnoise sample --help`)")
    p.add_argument("--steps", type=int, help="budget in grid steps (default: the run's)")
    p.add_argument("--guidance", type=float, help="class-conditional runs: guidance scale (default: the run's)")
    p.add_argument("--reference", type=Path, help="a folder of real images to compare the samples with (default: "
                                                  "the run's held-out data; required for a diffusers folder)")
    p.add_argument("--prompt", help="caption for the samples of a caption model (default: none, unconditional)")
    p.add_argument("--extractor", help="feature extractor: the dataset's classifier (default; Inception for a "
                                       "diffusers folder), or inception")
    p.add_argument("--inception-weights", type=Path,
                   help="local pt_inception-2015-12-05 weights (.pth or .safetensors) for --extractor inception")
    p.add_argument("--batch", type=int, default=128, help="--nll: data points per batch")
    p.add_argument("--vlb-variance", choices=["fixed_large", "fixed_small", "learned"],
                   help="--nll: reverse variance for the bound (default: the model's learned one)")
    p.add_argument("--divergence", default="auto", choices=["auto", "exact", "hutchinson"])
    p.add_argument("--draws", type=int, default=2, help="--nll: Hutchinson probe draws per data point (text "
                                                         "diffusion runs: ELBO time draws per window)")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    p.add_argument("--out", type=Path, help="output JSON (default RUN_DIR/eval.json, or eval_nll.json)")
    add_device(p)
    p.set_defaults(handler=run)


def check_args(args) -> None:
    check_number("--n", args.n, low=1 if args.nll else 4, integer=True)  # KID needs 4 samples per set
    for flag, value in (("--nfe", args.nfe), ("--steps", args.steps), ("--batch", args.batch),
                        ("--draws", args.draws)):
        check_number(flag, value, low=1, integer=True)
    check_number("--seed", args.seed, low=0, integer=True)
    check_number("--rtol", args.rtol, low=0, low_open=True)
    check_number("--atol", args.atol, low=0, low_open=True)
    check_number("--guidance", args.guidance, low=0, high=1000)
    check_output("--out", args.out)
    if args.reference is not None and args.nll:
        raise UnnoiseError("--reference: --nll scores the run's own held-out data, not a folder of images")
    if args.reference is not None and not args.reference.is_dir():
        raise UnnoiseError(f"--reference {args.reference}: not a directory")
    if args.inception_weights is not None and not args.inception_weights.is_file():
        raise UnnoiseError(f"--inception-weights {args.inception_weights}: file not found")


def run_kind(run_dir) -> str:
    """What `unnoise eval` scores in run_dir: a diffusers folder, a molecule, planning or autoencoder run,
    or (the rest) an image/audio/points run's sample quality. One-line errors for a missing or broken run."""
    from ..interop import is_diffusers_folder
    from ..planning.maze import is_maze_config
    from ..run.latent import is_autoencoder_config
    from ..run.load import read_run_config
    from ..run.molecules import is_molecule_config

    if is_diffusers_folder(run_dir):
        return "diffusers"
    config = read_run_config(run_dir)
    for kind, is_kind in (("molecule", is_molecule_config), ("planning", is_maze_config),
                          ("autoencoder", is_autoencoder_config)):
        if is_kind(config):
            return kind
    return "samples"


def run(args) -> None:
    check_args(args)
    kind = run_kind(args.run_dir)
    if args.nll and kind == "diffusers":
        raise UnnoiseError(f"--nll: {args.run_dir} is a diffusers folder, which holds no data to score; evaluate "
                           "its samples against a folder of images with --reference DIR")
    if kind not in ("diffusers", "samples"):
        for flag in ("--reference", "--prompt"):
            if getattr(args, flag[2:]) is not None:
                raise UnnoiseError(f"{flag}: {args.run_dir} is a {kind} run, evaluated on its own data")
    if args.nll and kind == "molecule":  # the ODE likelihood in the zero-CoM subspace (eval/molecules.py)
        from ..eval.molecules import evaluate_molecule_nll

        result = evaluate_molecule_nll(args.run_dir, n=args.n or 100, seed=args.seed, split=args.split,
                                       batch=args.batch, draws=args.draws, rtol=args.rtol, atol=args.atol,
                                       weights=args.weights, device=args.device)
        out = args.out or Path(args.run_dir) / "eval_nll.json"
    elif args.nll:
        from ..eval.nll import evaluate_nll

        result = evaluate_nll(args.run_dir, n=args.n or 256, seed=args.seed, split=args.split, batch=args.batch,
                              vlb_variance=args.vlb_variance, divergence=args.divergence, draws=args.draws,
                              rtol=args.rtol, atol=args.atol, weights=args.weights, device=args.device)
        out = args.out or Path(args.run_dir) / "eval_nll.json"
    elif kind == "molecule":  # stability, validity, uniqueness, novelty (eval/molecules.py)
        from ..eval.molecules import evaluate_molecule_run

        result = evaluate_molecule_run(args.run_dir, n=args.n or 1000, seed=args.seed, sampler=args.sampler,
                                       nfe=args.nfe, steps=args.steps, weights=args.weights, device=args.device)
        out = args.out or Path(args.run_dir) / "eval.json"
    elif kind == "planning":  # maze trajectories: the planner's scores (planning/evaluate.py)
        from ..planning.evaluate import evaluate_planning_run

        result = evaluate_planning_run(args.run_dir, n=args.n or 100, sampler=args.sampler, steps=args.steps,
                                       weights=args.weights, device=args.device)
        out = args.out or Path(args.run_dir) / "eval.json"
    elif kind == "autoencoder":  # PSNR, SSIM and rFD of held-out reconstructions (eval/autoencoder.py)
        from ..eval.autoencoder import evaluate_autoencoder_run

        result = evaluate_autoencoder_run(args.run_dir, n=args.n or 256, seed=args.seed, split=args.split,
                                          device=args.device, extractor=args.extractor)
        out = args.out or Path(args.run_dir) / "eval.json"
    else:
        from ..eval.quality import evaluate_quality

        if args.inception_weights is not None:
            from ..eval.features import register_extractor
            from ..eval.inception import inception_extractor

            register_extractor("inception", lambda: inception_extractor(args.inception_weights))
        result = evaluate_quality(args.run_dir, n=args.n or 1000, seed=args.seed, sampler=args.sampler,
                                  nfe=args.nfe, steps=args.steps, split=args.split,
                                  extractor=args.extractor or ("inception" if args.inception_weights else None),
                                  weights=args.weights, guidance=args.guidance, device=args.device,
                                  reference=args.reference, prompt=args.prompt)
        out = args.out or Path(args.run_dir) / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
