"""Receding-horizon planning with a trajectory diffusion run (Diffuser, Janner et al. 2022, on Maze2D).

Every `replan_every` steps the planner samples, for all bodies at once, a plan of H steps from the run with
the current state (position and velocity) inpainted at t = 0 and the goal position at the arrival step
planned so far (guidance.Inpainted): H - 1 for the first plan, then the earliest step any plan reached the
goal, minus the steps since, at least MIN_LEAD ahead (a shrinking horizon: with the goal always at H - 1,
each replan would postpone the arrival). Plans come through the run's pipeline (its sampler and grid, or a
request's). Each body gets `candidates` plans and tracks the most dynamically consistent (smallest largest
step between planned positions). A PD controller
tracks the plan as a reference, position and velocity one step ahead:
    u = clip(KP (p_ref - p) + KD (v_ref - v), -1, 1)
and, from the first planned step within HOLD of the goal on, the goal itself at rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..pipeline import Pipeline, SampleRequest
from ..sample import generate
from .control import KD, KP
from .dataset import POSITION, VELOCITY, TrajectoryScale
from .guidance import Inpainted, PolicyGuided
from .maze import SPEED_LIMIT, Maze

HOLD = 0.25  # the plan counts as arrived once a planned position is this close to the goal (cells)
MIN_LEAD = 8  # the goal is never put closer than this many steps ahead of the current state


def inpainting_constraints(scale: TrajectoryScale, p: np.ndarray, v: np.ndarray, goals: np.ndarray,
                           horizon: int, goal_index=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask), each (N, 6, H): the state (p, v) at t = 0 and the goal position at t = goal_index
    (per body; default H - 1)."""
    n = len(p)
    goal_index = np.full(n, horizon - 1) if goal_index is None else np.asarray(goal_index, dtype=np.int64)
    known, mask = torch.zeros(n, 6, horizon), torch.zeros(n, 6, horizon, dtype=torch.bool)
    known[:, POSITION, 0] = torch.from_numpy(scale.normalise_positions(p)).float()
    known[:, VELOCITY, 0] = torch.from_numpy(np.asarray(v) / SPEED_LIMIT).float()
    rows = torch.arange(n)
    at_goal = torch.from_numpy(goal_index)
    for channel, value in zip((0, 1), torch.from_numpy(scale.normalise_positions(goals)).float().T):
        known[rows, channel, at_goal] = value
        mask[rows, channel, at_goal] = True
    mask[:, POSITION, 0] = mask[:, VELOCITY, 0] = True
    return known, mask


@dataclass
class PlanSettings:
    """How plans are sampled: the sampling request (sampler, steps / nfe; None: the run's), the replanning
    period in steps, the seed of the first plan's noise (plan k of N bodies uses the next N seeds), and
    whether the constraints reach the network noised to the current level (replacement) or clean."""

    request: SampleRequest = SampleRequest()
    replan_every: int = 32
    seed: int = 0
    replacement: bool = True  # the network sees the constraints noised to the current level (guidance.Inpainted)
    shrink: bool = True  # keep the planned arrival step (goal_index) instead of the goal at H - 1 every replan
    candidates: int = 4  # plans sampled per body and replan; the most dynamically consistent one is tracked


class DiffusionPlanner:
    """A maze controller (reset(starts, goals), act(p, v) on (N, 2) arrays) planning with a trajectory run."""

    def __init__(self, pipe: Pipeline, maze: Maze, settings: PlanSettings = PlanSettings()):
        self.pipe, self.maze, self.settings = pipe, maze, settings
        self.scale = TrajectoryScale.for_maze(maze)
        self.horizon = int(pipe.config.data_shape[-1])
        self.plans: list[np.ndarray] = []  # every tracked plan's positions (N, H, 2), in order
        self.goals, self.references, self.clock, self.calls = None, None, 0, 0

    def sample_plans(self, p: np.ndarray, v: np.ndarray, goals: np.ndarray, policy=None, weight: float = 0.0,
                     goal_index=None):
        """Plans (N, 6, H) in normalised channels for bodies at (p, v) with `goals` at `goal_index` (default
        H - 1), the constraints exact; with a `policy` (PolicyGuided's form) also tilted by it with weight
        lambda = `weight`."""
        known, mask = inpainting_constraints(self.scale, p, v, goals, self.horizon, goal_index)
        D = PolicyGuided(self.pipe.denoiser, policy, weight) if policy is not None else self.pipe.denoiser
        first = self.settings.seed + self.calls * len(p)
        self.calls += 1
        noise = None
        if self.settings.replacement:  # one draw per plan, from the plan's first seed
            noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(first), dtype=torch.float64)
        D = Inpainted(D, known.to(self.pipe.device), mask.to(self.pipe.device), noise)
        plan = self.pipe.plan(self.settings.request, D)
        x = generate(D, self.pipe.shape, plan.sigmas, plan.function, seeds=range(first, first + len(p)),
                     device=self.pipe.device)
        return D.impose(x).float().cpu().numpy()

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> None:
        self.goals, self.clock, self.plans, self.calls = np.asarray(goals, dtype=np.float64), 0, [], 0
        self.arrival = np.full(len(self.goals), self.horizon - 1)  # the planned arrival step, per body

    def goal_index(self) -> np.ndarray:
        """Where the next plan puts the goal: at the arrival planned so far (a shrinking horizon, so that
        replanning does not postpone the arrival), at least MIN_LEAD steps ahead."""
        return np.clip(self.arrival - self.clock, min(MIN_LEAD, self.horizon - 1), self.horizon - 1)

    def candidate_plans(self, p: np.ndarray, v: np.ndarray, goal_index) -> dict:
        """Decoded plans (positions and velocities (N, H, 2)): per body the most dynamically consistent of
        `settings.candidates` samples, the one whose largest step between planned positions is smallest
        (a plan that jumps, e.g. through a wall to meet the goal, is one no body can follow)."""
        k, n = self.settings.candidates, len(p)
        index = None if goal_index is None else np.repeat(goal_index, k)
        x = self.sample_plans(np.repeat(p, k, 0), np.repeat(v, k, 0), np.repeat(self.goals, k, 0), goal_index=index)
        decoded = self.scale.decode(x.reshape(n, k, *x.shape[1:]))  # (N, K, H, 2) each
        jumps = np.linalg.norm(np.diff(decoded["positions"], axis=2), axis=3).max(2)  # (N, K)
        best = jumps.argmin(1)
        return {key: value[np.arange(n), best] for key, value in decoded.items()}

    def replan(self, p: np.ndarray, v: np.ndarray) -> None:
        goal_index = self.goal_index() if self.settings.shrink else None
        decoded = self.candidate_plans(p, v, goal_index)
        positions, velocities = decoded["positions"], decoded["velocities"]  # (N, H, 2)
        arrived = np.linalg.norm(positions - self.goals[:, None], axis=2) <= HOLD  # (N, H)
        first = np.where(arrived.any(1), arrived.argmax(1), self.horizon)
        self.arrival = np.minimum(self.arrival, self.clock + first)
        after = np.arange(self.horizon)[None] >= first[:, None]
        positions = np.where(after[..., None], self.goals[:, None], positions)  # the goal, at rest, from there
        velocities = np.where(after[..., None], 0.0, velocities)
        self.plans.append(positions)  # what is tracked: the plan up to its arrival, then the goal
        self.references = (positions, velocities)

    def act(self, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.clock % self.settings.replan_every == 0:
            self.replan(p, v)
        k = min(self.clock % self.settings.replan_every + 1, self.horizon - 1)
        self.clock += 1
        p_ref, v_ref = self.references[0][:, k], self.references[1][:, k]
        return np.clip(KP * (p_ref - p) + KD * (v_ref - v), -1.0, 1.0)


def plan_episode(pipe, start, goal, out, *, request=None, replan_every: int = 32, seed: int = 0,
                 episode_steps: int | None = None, where=("--start", "--goal")) -> dict:
    """Plan from `start` to `goal` (x, y in maze cells) with a maze run's pipeline, execute the plan with the
    PD controller, and draw the maze, every plan and the executed path to `out`; returns what happened
    (layout, steps, the step the goal was reached or None, the return, the number of plans). `where` names
    the start and goal in one-line errors."""
    from ..errors import UnnoiseError
    from ..pipeline import SampleRequest
    from .control import EPISODE_STEPS, GOAL_RADIUS
    from .draw import draw_plan
    from .maze import is_maze_config, make_maze
    from .scores import episodes

    if not is_maze_config(pipe.config):
        raise UnnoiseError(f"{pipe.run_dir} models {pipe.config.data.name!r} data, not maze trajectories; "
                           "train one with `unnoise train --preset maze-umaze`")
    maze = make_maze(pipe.config.data.options.get("layout", "umaze"))
    start, goal = maze.check_position(start, where[0]), maze.check_position(goal, where[1])
    planner = DiffusionPlanner(pipe, maze, PlanSettings(request or SampleRequest(), replan_every, seed))
    steps = episode_steps or EPISODE_STEPS[maze.name]
    result = episodes(maze, planner, start[None], goal[None], steps)
    plans = [plan[0] for plan in planner.plans]
    draw_plan(maze, out, plans=plans, executed=result.positions[0], start=start, goal=goal)
    within = np.linalg.norm(result.positions[0, 1:] - goal, axis=1) <= GOAL_RADIUS
    return {"layout": maze.name, "steps": steps, "reached_at": int(within.argmax()) + 1 if within.any() else None,
            "return": float(result.returns[0]), "plans": len(plans)}
