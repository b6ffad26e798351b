"""`unnoise eval RUN` for a maze trajectory run: the diffusion planner's success rate and normalised score on
held-out start/goal pairs, beside the expert's and random actions' (planning/scores.py states the formula)."""
from __future__ import annotations

import time
from pathlib import Path


def evaluate_planning_run(run_dir: Path, *, n: int = 100, seed: int = 1000, sampler=None, steps=None,
                          replan_every: int = 32, weights: str = "ema", device="auto") -> dict:
    """Roll out the run's receding-horizon planner, the expert and random actions on n held-out pairs."""
    from ..pipeline import Pipeline, SampleRequest
    from .maze import make_maze
    from .planner import DiffusionPlanner, PlanSettings
    from .scores import episodes, held_out_pairs, references, summary

    pipe = Pipeline.load(run_dir, device=device, weights=weights)
    maze = make_maze(pipe.config.data.options.get("layout", "umaze"))
    starts, goals = held_out_pairs(maze, n, seed)
    refs = references(maze, starts, goals)
    planner = DiffusionPlanner(pipe, maze, PlanSettings(SampleRequest(sampler=sampler, steps=steps), replan_every))
    start = time.perf_counter()
    result = summary(episodes(maze, planner, starts, goals), refs)
    return {"layout": maze.name, "pairs": n, "seed": seed, "diffusion": result,
            "expert": {"success_rate": refs["expert_success"], "mean_return": refs["expert_return"]},
            "random": {"success_rate": refs["random_success"], "mean_return": refs["random_return"]},
            "seconds": round(time.perf_counter() - start, 1)}
