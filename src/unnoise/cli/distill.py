"""`unnoise distill TEACHER_RUN --method progressive|consistency|consistency-training --nfe 4 --out STUDENT`:
train a few-step student of a run (run/distill_rounds.py); the student is an ordinary run directory."""
from __future__ import annotations

from pathlib import Path

from .common import add_device, check_number, require

SUMMARY = "distill a trained run into a few-step student (progressive distillation or a consistency model)"


def add_parser(sub) -> None:
    from ..run.distill import METHODS

    p = sub.add_parser("distill", help=SUMMARY, description=SUMMARY)
    p.add_argument("teacher", type=Path, help="the trained run to distill (its EMA weights, frozen)")
    p.add_argument("--method", default="progressive", choices=METHODS,
                   help="progressive: halving rounds of DDIM steps (Salimans & Ho 2022); consistency: consistency "
                        "distillation; consistency-training: no teacher calls (Song & Dhariwal 2023)")
    p.add_argument("--nfe", type=int, default=4, help="the student's steps (progressive: the last round's; "
                                                        "consistency: its default sampling budget)")
    p.add_argument("--teacher-steps", type=int, default=64,
                   help="progressive: the teacher's DDIM steps in the first round (nfe times a power of two)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per round (per student)")
    p.add_argument("--lr", type=float, help="learning rate (default: the teacher's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the teacher's)")
    p.add_argument("--from-scratch", action="store_true",
                   help="consistency-training: start from random weights instead of the run's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model.distill recipe value, e.g. --set target_ema=0.9 (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="the student's run directory")
    add_device(p)
    p.set_defaults(handler=run)


def _recipe(assignments: list[str]) -> dict:
    from ..run.config import parse_value

    recipe = {}
    for item in assignments:
        require("=" in item, f"--set {item!r}: expected KEY=VALUE (a model.distill setting)")
        key, value = item.split("=", 1)
        recipe[key] = parse_value(value)
    return recipe


def run(args) -> None:
    from ..run.distill_rounds import distill_run

    for flag, value in (("--nfe", args.nfe), ("--teacher-steps", args.teacher_steps), ("--steps", args.steps),
                        ("--batch-size", args.batch_size)):
        check_number(flag, value, low=1, integer=True)
    check_number("--lr", args.lr, low=0, low_open=True)
    require(not args.from_scratch or args.method == "consistency-training",
            "--from-scratch: only --method consistency-training trains without the teacher's weights")
    train = {"steps": args.steps, "sample_every": 0}
    train.update({key: value for key, value in (("lr", args.lr), ("batch_size", args.batch_size)) if value is not None})
    result = distill_run(args.teacher, args.out, args.method, nfe=args.nfe, teacher_steps=args.teacher_steps,
                         train=train, init=not args.from_scratch, recipe=_recipe(args.set), device=args.device)
    for part in result["rounds"]:
        state = "kept (already trained)" if part.get("kept") else f"trained in {part['seconds']:.1f}s"
        print(f"{part['steps']}-step student: {part['run']} {state}")
    print(f"student: {args.out} (unnoise sample {args.out} --nfe {args.nfe})")
