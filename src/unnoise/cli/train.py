"""`unnoise train`: a config from a preset or file, data and overrides -> a trained run directory."""
from __future__ import annotations

import os
from pathlib import Path

from .common import add_device

SUMMARY = "train a model; writes a run directory"


def add_parser(sub) -> None:
    from ..data import DATASETS
    from ..run.presets import preset_names

    p = sub.add_parser("train", help=SUMMARY, description=SUMMARY)
    p.add_argument("--preset", help=f"starting config from configs/ ({', '.join(preset_names())}; default digits)")
    p.add_argument("--config", type=Path, help="starting config file (YAML or JSON), instead of --preset")
    p.add_argument("--data", help=f"dataset name ({', '.join(sorted(DATASETS))})")
    p.add_argument("--data-path", help="folder of images or WAV files for --data imagefolder | audiofolder")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", default="runs/train", help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest intact checkpoint; --steps and --set may change "
                        "its length, learning rate and schedule, checkpoint/sample cadence, threads and device")
    p.add_argument("--force", action="store_true",
                   help="--out holds a run: move it aside (to OUT.replaced-TIMESTAMP) and start a new one")
    p.add_argument("--threads", type=int,
                   help="CPU threads (train.threads); default 0 = auto: the cores other processes leave free")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. --set train.lr=2e-4 (repeatable)")
    add_device(p)
    p.set_defaults(handler=run)


def run_config_from_args(args):
    """The run config the flags describe: preset or file, then --data, --steps, --batch-size, then --set."""
    from ..run.config import apply_overrides, config_from_dict
    from ..run.presets import preset, read_config_file

    d = read_config_file(args.config) if args.config else preset(args.preset or "digits")
    if args.data:
        d["data"] = {"name": args.data, "options": {}}
    if args.data_path:
        d.setdefault("data", {}).setdefault("options", {})["path"] = args.data_path
    if args.steps is not None:
        d.setdefault("train", {})["steps"] = args.steps
    if args.batch_size is not None:
        d.setdefault("train", {})["batch_size"] = args.batch_size
    return config_from_dict(apply_overrides(d, _assignments(args)), where="config")  # --set wins over everything


def _assignments(args) -> list[str]:
    return ([f"train.threads={args.threads}"] if args.threads is not None else []) + list(args.set)


def _flags_given(args) -> list[str]:
    """The flags that define a new run, as the user passed them (refused with --resume)."""
    given = {"--preset": args.preset is not None, "--config": args.config is not None, "--data": bool(args.data),
             "--data-path": bool(args.data_path), "--batch-size": args.batch_size is not None, "--force": args.force}
    return [flag for flag, on in given.items() if on]


def run(args) -> None:
    from ..run.guard import plan_training, resume_config
    from ..run.training import train_run

    config = None if args.resume else run_config_from_args(args)  # validated: nothing written before
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: rank 0 checks and owns the run directory
        config = plan_training(Path(args.out), resume=args.resume, config=config,
                               assignments=_assignments(args), steps=args.steps, force=args.force,
                               flags_given=_flags_given(args))
    elif args.resume:  # the other ranks only read the config rank 0 resumes with
        config = resume_config(Path(args.out), _assignments(args), args.steps)[0]
    result = train_run(config, Path(args.out), resume=args.resume, device=args.device)
    print(f"trained {result['trained_steps']} steps in {result['seconds']:.1f}s (at step {result['steps']}); "
          f"run directory: {args.out}")
