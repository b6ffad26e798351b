"""`unnoise plan RUN --start x,y --goal x,y --out plan.png`: plan with a trajectory diffusion run in its maze
(receding horizon, PD tracking), execute the plan and draw the maze, every plan and the executed path."""
from __future__ import annotations

from pathlib import Path

from .common import add_device, check_number, check_output

SUMMARY = "plan a path in a maze with a trajectory diffusion run (maze-* presets) and draw it"


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help=SUMMARY, description=SUMMARY)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--start", required=True, help="start position x,y in maze cells (x: column, y: row)")
    p.add_argument("--goal", required=True, help="goal position x,y in maze cells")
    p.add_argument("--out", type=Path, default=Path("plan.png"), help="picture to write (.png/.jpg)")
    p.add_argument("--episode-steps", type=int, help="steps to execute (default: the layout's D4RL limit)")
    p.add_argument("--replan-every", type=int, default=32, help="steps between replans (default 32)")
    p.add_argument("--sampler", help="sampler (default: the run's sample.sampler)")
    p.add_argument("--steps", type=int, help="sampler grid steps (default: the run's sample.steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="ema", choices=["ema", "model"])
    add_device(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ..pipeline import Pipeline, SampleRequest
    from ..planning.maze import parse_point
    from ..planning.planner import plan_episode

    check_output("--out", args.out)
    check_number("--replan-every", args.replan_every, low=1, integer=True)
    check_number("--episode-steps", args.episode_steps, low=1, integer=True)
    check_number("--steps", args.steps, low=1, integer=True)
    pipe = Pipeline.load(args.run_dir, device=args.device, weights=args.weights)
    start, goal = parse_point("--start", args.start), parse_point("--goal", args.goal)
    done = plan_episode(pipe, start, goal, args.out, request=SampleRequest(sampler=args.sampler, steps=args.steps),
                        replan_every=args.replan_every, seed=args.seed, episode_steps=args.episode_steps)
    reached = done["reached_at"]
    outcome = f"reached the goal at step {reached}" if reached else "did not reach the goal"
    print(f"{done['layout']}: {outcome} of {done['steps']} (return {done['return']:g}, {done['plans']} plans); "
          f"wrote {args.out}")
