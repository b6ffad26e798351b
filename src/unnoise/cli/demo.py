"""`unnoise demo`: train the digits preset, then sample a grid and a trajectory GIF with the run's sampler."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .common import add_device

SUMMARY = "train on built-in digits, then sample a grid"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help=SUMMARY, description=SUMMARY)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--steps", type=int, help="training steps (default: the digits preset)")
    add_device(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ..pipeline import Pipeline, SampleRequest
    from ..run.config import config_from_dict
    from ..run.presets import preset
    from ..run.training import train_run
    from .sample import record_frames, write_outputs

    d = preset("digits")
    if args.steps is not None:
        d = {**d, "train": {**d["train"], "steps": args.steps}}
    t0 = time.perf_counter()
    from ..run.guard import plan_training

    config = plan_training(args.out, resume=False, config=config_from_dict(d), force=True)  # an old demo: aside
    result = train_run(config, args.out, device=args.device)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    grid, gif = args.out / "demo_samples.png", args.out / "demo_trajectory.gif"
    pipe = Pipeline.load(args.out, device=args.device)
    frames = []
    x = pipe.sample(SampleRequest(n=100, seed=0, batch_size=100,
                                  callback=record_frames(frames)))
    write_outputs(pipe.config, x, grid, gif=gif, frames=frames)
    print(json.dumps({"run_dir": str(args.out), "grid": str(grid), "trajectory": str(gif),
                      "train_seconds": round(train_seconds, 1), "sample_seconds": round(time.perf_counter() - t1, 1),
                      "steps": result["steps"]}))
    print(f"demo done: samples in {grid}, trajectory in {gif}")
