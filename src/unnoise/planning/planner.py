"""Receding-horizon planning with a trajectory diffusion run (Diffuser, Janner et al. 2022, on Maze2D).

Every `replan_every` steps the planner samples, for all bodies at once, a plan of H steps from the run with
the current state (position and velocity) inpainted at t = 0 and the goal position at t = H - 1
(guidance.Inpainted), through the run's pipeline (its sampler and grid, or a request's). A PD controller
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


def inpainting_constraints(scale: TrajectoryScale, p: np.ndarray, v: np.ndarray, goals: np.ndarray,
                           horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask), each (N, 6, H): the state (p, v) at t = 0 and the goal position at t = H - 1."""
    n = len(p)
    known, mask = torch.zeros(n, 6, horizon), torch.zeros(n, 6, horizon, dtype=torch.bool)
    known[:, POSITION, 0] = torch.from_numpy(scale.normalise_positions(p)).float()
    known[:, VELOCITY, 0] = torch.from_numpy(np.asarray(v) / SPEED_LIMIT).float()
    known[:, POSITION, -1] = torch.from_numpy(scale.normalise_positions(goals)).float()
    mask[:, POSITION, 0] = mask[:, VELOCITY, 0] = mask[:, POSITION, -1] = True
    return known, mask


@dataclass
class PlanSettings:
    """How plans are sampled: the sampling request (sampler, steps / nfe; None: the run's), the replanning
    period in steps, and the seed of the first plan's noise (plan k of N bodies uses the next N seeds)."""

    request: SampleRequest = SampleRequest()
    replan_every: int = 32
    seed: int = 0


class DiffusionPlanner:
    """A maze controller (reset(starts, goals), act(p, v) on (N, 2) arrays) planning with a trajectory run."""

    def __init__(self, pipe: Pipeline, maze: Maze, settings: PlanSettings = PlanSettings()):
        self.pipe, self.maze, self.settings = pipe, maze, settings
        self.scale = TrajectoryScale.for_maze(maze)
        self.horizon = int(pipe.config.data_shape[-1])
        self.plans: list[np.ndarray] = []  # every plan's positions (N, H, 2), in order
        self.goals, self.references, self.clock, self.calls = None, None, 0, 0

    def sample_plans(self, p: np.ndarray, v: np.ndarray, goals: np.ndarray, policy=None, weight: float = 0.0):
        """Plans (N, 6, H) in normalised channels for bodies at (p, v) with `goals`, the constraints exact;
        with a `policy` (PolicyGuided's form) also tilted by it with weight lambda = `weight`."""
        known, mask = inpainting_constraints(self.scale, p, v, goals, self.horizon)
        D = PolicyGuided(self.pipe.denoiser, policy, weight) if policy is not None else self.pipe.denoiser
        D = Inpainted(D, known.to(self.pipe.device), mask.to(self.pipe.device))
        plan = self.pipe.plan(self.settings.request, D)
        first = self.settings.seed + self.calls * len(p)
        self.calls += 1
        x = generate(D, self.pipe.shape, plan.sigmas, plan.function, seeds=range(first, first + len(p)),
                     device=self.pipe.device)
        return D.impose(x).float().cpu().numpy()

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> None:
        self.goals, self.clock, self.plans, self.calls = np.asarray(goals, dtype=np.float64), 0, [], 0

    def replan(self, p: np.ndarray, v: np.ndarray) -> None:
        decoded = self.scale.decode(self.sample_plans(p, v, self.goals))
        positions, velocities = decoded["positions"], decoded["velocities"]  # (N, H, 2)
        self.plans.append(positions)
        arrived = np.linalg.norm(positions - self.goals[:, None], axis=2) <= HOLD  # (N, H)
        first = np.where(arrived.any(1), arrived.argmax(1), self.horizon)
        after = np.arange(self.horizon)[None] >= first[:, None]
        positions = np.where(after[..., None], self.goals[:, None], positions)  # the goal, at rest, from there
        velocities = np.where(after[..., None], 0.0, velocities)
        self.references = (positions, velocities)

    def act(self, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.clock % self.settings.replan_every == 0:
            self.replan(p, v)
        k = min(self.clock % self.settings.replan_every + 1, self.horizon - 1)
        self.clock += 1
        p_ref, v_ref = self.references[0][:, k], self.references[1][:, k]
        return np.clip(KP * (p_ref - p) + KD * (v_ref - v), -1.0, 1.0)
