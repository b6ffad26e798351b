"""Controllers in the maze: a PD controller tracking waypoints, A* on the grid, the expert (A* + PD), random
waypoint walks (the offline data, no goals), and episode roll-outs with the sparse goal reward.

PD law (per axis, then clipped to the force bound):  u = clip(KP (w - p) - KD v, -1, 1).
An episode succeeds when the body's centre comes within GOAL_RADIUS of the goal (D4RL Maze2D's 0.5).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .maze import Maze, step

KP = 3.0  # proportional gain (1 / s^2 per action unit)
KD = 2.0  # derivative gain
REACHED = 0.3  # a waypoint counts as reached within this distance (cells)
GOAL_RADIUS = 0.5  # success radius around the goal (D4RL Maze2D)
EPISODE_STEPS = {"umaze": 300, "medium": 600, "large": 800}  # D4RL Maze2D max_episode_steps


def pd_action(p: np.ndarray, v: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
    """The PD force towards `waypoint` for bodies at p with velocity v (all (N, 2)), clipped to [-1, 1]."""
    return np.clip(KP * (waypoint - p) - KD * v, -1.0, 1.0)


def astar(maze: Maze, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """The shortest 4-connected path of free cells from `start` to `goal` (both (row, column)), both ends
    included; A* with the Manhattan distance, an admissible heuristic on a 4-connected grid."""
    def h(cell):
        return abs(cell[0] - goal[0]) + abs(cell[1] - goal[1])

    frontier, came_from, cost = [(h(start), 0, start)], {start: None}, {start: 0}
    while frontier:
        _, g, cell = heapq.heappop(frontier)
        if cell == goal:
            break
        if g > cost[cell]:
            continue  # a stale entry
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (cell[0] + di, cell[1] + dj)
            if maze.walls[nxt] or cost.get(nxt, g + 2) <= g + 1:
                continue
            cost[nxt], came_from[nxt] = g + 1, cell
            heapq.heappush(frontier, (g + 1 + h(nxt), g + 1, nxt))
    if goal not in came_from:
        raise ValueError(f"no path from {start} to {goal}")
    path = [goal]
    while came_from[path[-1]] is not None:
        path.append(came_from[path[-1]])
    return path[::-1]


def cell_centre(cell: tuple[int, int]) -> np.ndarray:
    return np.array([cell[1], cell[0]], dtype=np.float64)


class WaypointTracker:
    """PD tracking of a list of waypoints (K, 2), advancing when within REACHED; the last one is held."""

    def __init__(self, waypoints: np.ndarray):
        self.waypoints = [(float(w[0]), float(w[1])) for w in np.asarray(waypoints, dtype=np.float64).reshape(-1, 2)]
        self.index = 0

    def waypoint(self, p) -> tuple[float, float]:
        """The current waypoint after advancing past those already within REACHED of p."""
        x, y = float(p[0]), float(p[1])
        while self.index < len(self.waypoints) - 1 and \
                (self.waypoints[self.index][0] - x) ** 2 + (self.waypoints[self.index][1] - y) ** 2 < REACHED**2:
            self.index += 1
        return self.waypoints[self.index]


class Expert:
    """A* over the grid from each body's cell to its goal's cell, then PD along the cell centres and onto
    the exact goal. Routes are planned once per episode (`reset`); acts on batches (N, 2)."""

    def __init__(self, maze: Maze):
        self.maze = maze
        self.trackers: list[WaypointTracker] = []

    def route(self, p: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The waypoints (K, 2) from position p to goal: the A* cells' centres after p's own, then the goal."""
        cells = astar(self.maze, self.maze.cell_of(p), self.maze.cell_of(goal))
        return np.stack([cell_centre(cell) for cell in cells[1:-1]] + [np.asarray(goal, dtype=np.float64)])

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> None:
        self.trackers = [WaypointTracker(self.route(p, g)) for p, g in zip(starts, goals)]

    def act(self, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        waypoints = np.array([tracker.waypoint(q) for tracker, q in zip(self.trackers, p)])
        return pd_action(p, v, waypoints)


class RandomActions:
    """The reference policy for a score of 0: uniform random forces in [-1, 1]^2."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, starts, goals) -> None:
        pass

    def act(self, p, v) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=p.shape)


@dataclass
class Episodes:
    """N roll-outs: positions (N, T + 1, 2), velocities (N, T + 1, 2), actions (N, T, 2), goals (N, 2), the
    returns (N,) (steps spent within GOAL_RADIUS of the goal: the sparse Maze2D reward summed) and success
    (N,) (the goal reached at least once)."""

    positions: np.ndarray
    velocities: np.ndarray
    actions: np.ndarray
    goals: np.ndarray
    returns: np.ndarray
    success: np.ndarray


def rollout(maze: Maze, policy, starts: np.ndarray, goals: np.ndarray, steps: int) -> Episodes:
    """Run `policy` (reset(starts, goals), act(p, v) -> u, all (N, 2)) for N bodies from rest at `starts`
    for `steps` steps; r_t = 1 when |p_t - goal| <= GOAL_RADIUS."""
    p = np.array(starts, dtype=np.float64).reshape(-1, 2)
    goals = np.array(goals, dtype=np.float64).reshape(-1, 2)
    v = np.zeros_like(p)
    policy.reset(p.copy(), goals.copy())
    positions, velocities, actions = [p], [v], []
    for _ in range(steps):
        u = np.clip(policy.act(p, v), -1.0, 1.0)
        p, v = step(maze, p, v, u)
        positions.append(p)
        velocities.append(v)
        actions.append(u)
    positions = np.stack(positions, 1)
    rewards = np.linalg.norm(positions[:, 1:] - goals[:, None], axis=2) <= GOAL_RADIUS
    return Episodes(positions, np.stack(velocities, 1), np.stack(actions, 1), goals,
                    rewards.sum(1).astype(np.float64), rewards.any(1))


def random_free_position(maze: Maze, rng: np.random.Generator, jitter: float = 0.25) -> np.ndarray:
    """A uniformly chosen free cell's centre plus a uniform offset in [-jitter, jitter]^2."""
    cells = maze.free_cells()
    cell = cells[rng.integers(len(cells))]
    return cell_centre(cell) + rng.uniform(-jitter, jitter, size=2)


def start_goal_pairs(maze: Maze, count: int, seed: int, min_cells: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` (start, goal) pairs of random free positions whose cells are at least `min_cells` apart by
    the shortest grid path, reproducible from `seed`."""
    rng, pairs = np.random.default_rng(seed), []
    while len(pairs) < count:
        start, goal = random_free_position(maze, rng), random_free_position(maze, rng)
        if len(astar(maze, maze.cell_of(start), maze.cell_of(goal))) - 1 >= min_cells:
            pairs.append((start, goal))
    return pairs


def waypoint_walks(maze: Maze, walks: int, steps: int, seed: int, noise: float = 0.1) -> dict:
    """Random waypoint walks without goals (the offline data, like D4RL Maze2D's): each walk starts at a
    random free position and tracks, with PD plus Gaussian action noise (std `noise`), the centre of a
    random neighbouring free cell (not the one it came from, unless at a dead end), jittered by up to 0.15,
    choosing the next when within REACHED. Returns float64 arrays positions and velocities (walks, steps + 1,
    2) and actions (walks, steps, 2)."""
    rng = np.random.default_rng(seed)
    p = np.stack([random_free_position(maze, rng) for _ in range(walks)])
    v = np.zeros_like(p)
    current = [maze.cell_of(q) for q in p]
    previous = list(current)
    target = np.stack([cell_centre(c) for c in current])
    positions, velocities, actions = [p], [v], []
    for _ in range(steps):
        for k in range(walks):
            if np.linalg.norm(target[k] - p[k]) < REACHED:
                nxt = _next_cell(maze, current[k], previous[k], rng)
                previous[k], current[k] = current[k], nxt
                target[k] = cell_centre(nxt) + rng.uniform(-0.15, 0.15, size=2)
        u = np.clip(pd_action(p, v, target) + noise * rng.standard_normal(p.shape), -1.0, 1.0)
        p, v = step(maze, p, v, u)
        positions.append(p)
        velocities.append(v)
        actions.append(u)
    return {"positions": np.stack(positions, 1), "velocities": np.stack(velocities, 1),
            "actions": np.stack(actions, 1)}


def _next_cell(maze: Maze, cell, previous, rng) -> tuple[int, int]:
    neighbours = [(cell[0] + di, cell[1] + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    neighbours = [c for c in neighbours if not maze.walls[c]]
    onward = [c for c in neighbours if c != previous] or neighbours
    return onward[rng.integers(len(onward))]
