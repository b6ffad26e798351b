"""Planning with diffusion in the D4RL Maze2D layouts (self-contained numpy mazes, unnoise.planning).

Per layout (umaze, medium, large):
  1. trains the maze-<layout> preset (trajectory diffusion, 1-D U-Net on random-waypoint-walk windows), or
     reuses RUNS_DIR/maze-<layout> when it holds a finished run;
  2. draws --pairs held-out start/goal pairs (seed 1000; the walks use seeds 0..) and rolls out, for the
     layout's D4RL episode length (300 / 600 / 800 steps), from rest:
       expert     A* on the grid + PD tracking (the score's 100)
       random     uniform random forces (the score's 0)
       diffusion  receding-horizon diffusion planning: start state and goal inpainted, replanned every
                  --replan-every steps, tracked by PD
       bc         goal-conditioned behaviour cloning on the real windows (hindsight goals)
       bc_pgd     the same offline agent trained on real + policy-guided synthetic windows: windows sampled
                  from the diffusion model tilted by the bc policy's action likelihood (weight --pgd-lambda)
                  towards a random goal each, relabelled like the real ones
  Scores: success rate (the goal reached within 0.5 at least once) and the normalised score
     100 * (R - R_random) / (R_expert - R_random),   R = mean over pairs of the steps spent within 0.5
  of the goal (D4RL Maze2D's sparse return), R_expert and R_random on the same pairs.

    python benchmarks/planning.py --json [--layouts umaze,medium,large] [--pairs 100] [--runs-dir runs/planning]
    python benchmarks/planning.py --json --quick      # umaze only, small budgets: checks the path, not the targets

Targets (issue 28): diffusion >= 90 / 70 / 50 on umaze / medium / large and above bc on each; bc_pgd above bc.
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

import numpy as np
import torch

QUICK = {"train_steps": 200, "pairs": 10, "bc_steps": 300, "synthetic": 64, "walks": 16, "sample_steps": 6,
         "overrides": ["model.network_options.base_channels=16"]}


def ensure_run(layout: str, runs_dir: Path, train_steps: int | None, walks: int | None,
               overrides: list[str]) -> tuple[Path, float | None]:
    """The trained maze-<layout> run and its training seconds (None when reused); `overrides` are --set
    assignments (section.key=value) applied to the preset."""
    from unnoise.run.config import apply_overrides, config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    run_dir = runs_dir / f"maze-{layout}"
    if (run_dir / "checkpoint" / "ema.safetensors").is_file():
        return run_dir, None
    config = apply_overrides(preset(f"maze-{layout}"), overrides)
    config["train"]["sample_every"] = 0
    if train_steps:
        config["train"]["steps"] = train_steps
    if walks:
        config["data"]["options"]["walks"] = walks
    start = time.perf_counter()
    train_run(config_from_dict(config), run_dir, preview=False)
    return run_dir, round(time.perf_counter() - start, 1)


def synthetic_windows(planner, policy, count: int, weight: float, seed: int) -> torch.Tensor:
    """Policy-guided windows (count, 6, H): start states from random free positions at rest, the bc policy
    bound to a random goal per window guiding the actions with weight lambda; no goal is inpainted."""
    from unnoise.planning.control import random_free_position
    from unnoise.planning.guidance import Inpainted, PolicyGuided
    from unnoise.planning.planner import inpainting_constraints
    from unnoise.planning.policy import GoalBound
    from unnoise.sample import generate

    rng = np.random.default_rng(seed)
    starts = np.stack([random_free_position(planner.maze, rng) for _ in range(count)])
    goals = np.stack([random_free_position(planner.maze, rng) for _ in range(count)])
    known, mask = inpainting_constraints(planner.scale, starts, np.zeros_like(starts), goals, planner.horizon)
    mask[:, :, -1] = False  # the start only: the goal is the policy's, not a constraint
    bound = GoalBound(policy, torch.from_numpy(planner.scale.normalise_positions(goals)).float())
    D = Inpainted(PolicyGuided(planner.pipe.denoiser, bound, weight), known, mask)
    plan = planner.pipe.plan(planner.settings.request, D)
    return D.impose(generate(D, planner.pipe.shape, plan.sigmas, plan.function, seeds=range(seed, seed + count)))


def evaluate_layout(layout: str, args) -> dict:
    from unnoise.data import load_dataset
    from unnoise.pipeline import Pipeline, SampleRequest
    from unnoise.planning.maze import make_maze
    from unnoise.planning.planner import DiffusionPlanner, PlanSettings
    from unnoise.planning.policy import PolicyController, train_policy
    from unnoise.planning.scores import episodes, held_out_pairs, references, summary

    run_dir, train_seconds = ensure_run(layout, args.runs_dir, args.train_steps, args.walks, args.set)
    pipe = Pipeline.load(run_dir, device=args.device)
    maze = make_maze(layout)
    starts, goals = held_out_pairs(maze, args.pairs)
    refs = references(maze, starts, goals)
    out = {"run": str(run_dir), "train_seconds": train_seconds, "pairs": args.pairs, "references": refs}
    planner = DiffusionPlanner(pipe, maze, PlanSettings(SampleRequest(steps=args.sample_steps), args.replan_every))
    t0 = time.perf_counter()
    out["diffusion"] = summary(episodes(maze, planner, starts, goals), refs)
    out["diffusion"]["seconds"] = round(time.perf_counter() - t0, 1)
    real = load_dataset("maze", **pipe.config.data.options).x
    bc = train_policy(real, steps=args.bc_steps, seed=0)
    out["bc"] = summary(episodes(maze, PolicyController(bc, planner.scale), starts, goals), refs)
    t0 = time.perf_counter()
    synthetic = synthetic_windows(planner, bc, args.synthetic, args.pgd_lambda, seed=77_000)
    agent = train_policy(torch.cat([real, synthetic.float()]), steps=args.bc_steps, seed=0)
    out["bc_pgd"] = summary(episodes(maze, PolicyController(agent, planner.scale), starts, goals), refs)
    out["bc_pgd"].update(synthetic_windows=args.synthetic, real_windows=len(real), pgd_lambda=args.pgd_lambda,
                         seconds=round(time.perf_counter() - t0, 1))
    out["expert"] = {"success_rate": refs["expert_success"], "normalised_score": 100.0}
    out["random"] = {"success_rate": refs["random_success"], "normalised_score": 0.0}
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="umaze only, small budgets (a smoke run, not the targets)")
    p.add_argument("--layouts", default="umaze,medium,large")
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--runs-dir", type=Path, default=Path("runs/planning"))
    p.add_argument("--train-steps", type=int, help="default: the preset's")
    p.add_argument("--walks", type=int, help="random walks in the training data (default: the preset's)")
    p.add_argument("--sample-steps", type=int, default=10, help="sampler grid steps per plan (the run's sampler)")
    p.add_argument("--replan-every", type=int, default=32)
    p.add_argument("--bc-steps", type=int, default=3000)
    p.add_argument("--synthetic", type=int, default=2048, help="policy-guided synthetic windows")
    p.add_argument("--pgd-lambda", type=float, default=1.0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the presets (as in unnoise train), e.g. train.batch_size=64")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.quick:
        args.layouts = "umaze"
        for key, value in QUICK.items():
            if key == "overrides":
                args.set = value + args.set
            else:
                setattr(args, key, value)
        args.runs_dir = args.runs_dir / "quick"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    result = {"formula": "score = 100 * (R - R_random) / (R_expert - R_random); R = mean steps within 0.5 of the "
                         "goal per episode (D4RL Maze2D sparse return)", "quick": bool(args.quick),
              "layouts": {layout: evaluate_layout(layout, args) for layout in args.layouts.split(",")}}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
