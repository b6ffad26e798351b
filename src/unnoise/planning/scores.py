"""Scores of maze controllers: success rate and the normalised score.

An episode from rest at `start` lasts EPISODE_STEPS[layout] steps (D4RL Maze2D's limits 300 / 600 / 800)
with the sparse reward r_t = 1 when |p_t - goal| <= 0.5, else 0; its return R is the sum. Over the same
start/goal pairs, the normalised score is D4RL's formula with our references:

    score = 100 * (R_mean - R_random) / (R_expert - R_random)

R_expert: the mean return of the A* + PD expert, R_random: that of uniform random forces. A controller that
reaches goals sooner than the expert and stays there scores above 100 (Diffuser's Maze2D scores exceed 100
for the same reason: D4RL's expert reference is a slower controller).
"""
from __future__ import annotations

import numpy as np

from .control import EPISODE_STEPS, Episodes, Expert, RandomActions, rollout, start_goal_pairs
from .maze import Maze


def held_out_pairs(maze: Maze, count: int, seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """`count` start/goal pairs (starts (N, 2), goals (N, 2)) from a seed the training data never uses."""
    pairs = start_goal_pairs(maze, count, seed)
    return np.stack([p for p, _ in pairs]), np.stack([g for _, g in pairs])


def episodes(maze: Maze, policy, starts: np.ndarray, goals: np.ndarray, steps: int | None = None) -> Episodes:
    """Roll out `policy` from every start towards its goal for the layout's episode length."""
    return rollout(maze, policy, starts, goals, EPISODE_STEPS.get(maze.name, 300) if steps is None else steps)


def references(maze: Maze, starts: np.ndarray, goals: np.ndarray, seed: int = 0) -> dict:
    """The expert's and random actions' mean returns and success rates on these pairs."""
    expert, random = episodes(maze, Expert(maze), starts, goals), episodes(maze, RandomActions(seed), starts, goals)
    return {"expert_return": float(expert.returns.mean()), "random_return": float(random.returns.mean()),
            "expert_success": float(expert.success.mean()), "random_success": float(random.success.mean())}


def normalised_score(mean_return: float, refs: dict) -> float:
    """100 (R - R_random) / (R_expert - R_random) (module docstring)."""
    return 100.0 * (mean_return - refs["random_return"]) / (refs["expert_return"] - refs["random_return"])


def summary(result: Episodes, refs: dict) -> dict:
    """Success rate, mean return and normalised score of a batch of episodes."""
    mean_return = float(result.returns.mean())
    return {"success_rate": float(result.success.mean()), "mean_return": round(mean_return, 2),
            "normalised_score": round(normalised_score(mean_return, refs), 1)}
