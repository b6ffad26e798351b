"""A point mass with velocity and bounded force in the D4RL Maze2D layouts, in numpy.

Layouts (facts, not code): the U-maze, medium and large grids of D4RL's `d4rl/pointmaze/maze_model.py`
(`U_MAZE`, `MEDIUM_MAZE`, `LARGE_MAZE`; Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement
Learning"), with their start/goal markers read as free cells. '#' is a wall cell, 'O' a free one.

Coordinates: cell (row i, column j) is the unit square centred at (x, y) = (j, i); the body is an
axis-aligned square of half side RADIUS centred at the position p = (x, y). One step of length DT
(semi-implicit Euler with linear drag, mass 1):

    v' = (1 - DRAG DT) v + ACCEL DT clip(u, -1, 1)          u: the action, a bounded force per axis
    x' = sweep of x by v'_x DT, then y' = sweep of y by v'_y DT

A sweep moves the body along one axis and stops it flush against the first wall cell in its way, however
far the step (the blocking cell is found from a precomputed next-wall table, not by sampling the path), and
sets that velocity component to 0 (an inelastic contact). So the body never overlaps a wall at any speed,
and its speed obeys |v'| <= (1 - DRAG DT) |v| + sqrt(2) ACCEL DT (collisions only remove energy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnnoiseError, unknown_name

LAYOUTS = {
    "umaze": ("#####",
              "#OOO#",
              "###O#",
              "#OOO#",
              "#####"),
    "medium": ("########",
               "#OO##OO#",
               "#OO#OOO#",
               "##OOO###",
               "#OO#OOO#",
               "#O#OO#O#",
               "#OOO#OO#",
               "########"),
    "large": ("############",
              "#OOOO#OOOOO#",
              "#O##O#O#O#O#",
              "#OOOOOO#OOO#",
              "#O####O###O#",
              "#OO#O#OOOOO#",
              "##O#O#O#O###",
              "#OO#OOO#OOO#",
              "############"),
}
RADIUS = 0.1  # half side of the body's square (cells)
DT = 0.1  # seconds per step
ACCEL = 2.0  # acceleration per unit action (mass 1: the force bound), cells / s^2
DRAG = 1.0  # linear drag, 1 / s
SPEED_LIMIT = np.sqrt(2.0) * ACCEL / DRAG  # the terminal speed under full force on both axes
TOUCH = 1e-9  # overlaps below this (rounding) count as touching, not as entering a cell


@dataclass(frozen=True)
class Maze:
    """A grid of wall / free cells with the tables the physics and the planners use."""

    name: str
    walls: np.ndarray  # (rows, columns) bool
    next_wall: dict = field(repr=False, compare=False)  # direction -> (rows, columns) int table

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.walls.shape)

    def free_cells(self) -> list[tuple[int, int]]:
        """The free cells (row, column) in row-major order."""
        return [tuple(int(k) for k in cell) for cell in np.argwhere(~self.walls)]

    def cell_of(self, p) -> tuple[int, int]:
        """The (row, column) of the cell containing position p = (x, y)."""
        return int(np.floor(p[1] + 0.5)), int(np.floor(p[0] + 0.5))

    def body_overlap(self, p) -> float:
        """The largest overlap (cells, per axis) of the body at p with any wall cell or the outside; 0 if free."""
        x, y = float(p[0]), float(p[1])
        rows, cols = self.shape
        worst = 0.0
        for i in range(int(np.floor(y - RADIUS + 0.5)) - 1, int(np.floor(y + RADIUS + 0.5)) + 2):
            for j in range(int(np.floor(x - RADIUS + 0.5)) - 1, int(np.floor(x + RADIUS + 0.5)) + 2):
                if 0 <= i < rows and 0 <= j < cols and not self.walls[i, j]:
                    continue
                dx = min(x + RADIUS, j + 0.5) - max(x - RADIUS, j - 0.5)
                dy = min(y + RADIUS, i + 0.5) - max(y - RADIUS, i - 0.5)
                worst = max(worst, min(dx, dy))
        return worst

    def check_position(self, p, what: str = "position") -> np.ndarray:
        """p as a float64 (2,) array, or a one-line error when it is outside the maze or in a wall."""
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        rows, cols = self.shape
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise UnnoiseError(f"{what}: expected two finite numbers x,y, got {p.tolist()}")
        if not (-0.5 < p[0] < cols - 0.5 and -0.5 < p[1] < rows - 0.5):
            raise UnnoiseError(f"{what} {p[0]:g},{p[1]:g} is outside the {self.name} maze "
                               f"(x in [0, {cols - 1}], y in [0, {rows - 1}])")
        if self.body_overlap(p) > TOUCH:
            raise UnnoiseError(f"{what} {p[0]:g},{p[1]:g} is inside a wall of the {self.name} maze "
                               f"(free cells: {', '.join(f'{j},{i}' for i, j in self.free_cells()[:6])}, ...)")
        return p


def make_maze(name: str) -> Maze:
    """The maze of layout `name` (umaze, medium, large)."""
    if name not in LAYOUTS:
        raise unknown_name("maze layout", name, LAYOUTS)
    walls = np.array([[ch == "#" for ch in row] for row in LAYOUTS[name]], dtype=bool)
    return Maze(name, walls, _next_wall_tables(walls))


def _next_wall_tables(walls: np.ndarray) -> dict:
    """For every cell, the index of the nearest wall cell strictly beyond it in each direction (same row
    for +x / -x, same column for +y / -y). The outer ring is walls, so one always exists inside the grid;
    a cell on the ring points past it (-1 or the size), which a body inside never reaches."""
    rows, cols = walls.shape
    tables = {d: np.zeros((rows, cols), dtype=np.int64) for d in ("+x", "-x", "+y", "-y")}
    for i in range(rows):
        for j in range(cols):
            tables["+x"][i, j] = next((k for k in range(j + 1, cols) if walls[i, k]), cols)
            tables["-x"][i, j] = next((k for k in range(j - 1, -1, -1) if walls[i, k]), -1)
            tables["+y"][i, j] = next((k for k in range(i + 1, rows) if walls[k, j]), rows)
            tables["-y"][i, j] = next((k for k in range(i - 1, -1, -1) if walls[k, j]), -1)
    return tables


def _spanned(coordinate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last cell index the body's open interval (c - RADIUS, c + RADIUS) overlaps."""
    low = np.floor(coordinate - RADIUS + 0.5 + TOUCH).astype(np.int64)
    high = (np.ceil(coordinate + RADIUS + 0.5 - TOUCH) - 1).astype(np.int64)
    return low, high


def sweep(maze: Maze, p: np.ndarray, v: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Move bodies at p (N, 2) by v[:, axis] * DT along `axis`, stopping each flush against the first wall
    cell in its way (velocity component set to 0 there). Returns the new (p, v)."""
    p, v = p.copy(), v.copy()
    other = 1 - axis
    low, high = _spanned(p[:, other])  # the rows (x sweep) or columns (y sweep) the body spans
    centre = np.floor(p[:, axis] + 0.5).astype(np.int64)
    target = p[:, axis] + v[:, axis] * DT
    name = "xy"[axis]
    forward, backward = maze.next_wall["+" + name], maze.next_wall["-" + name]

    def lookup(table, lane):
        return table[centre, lane] if axis == 1 else table[lane, centre]

    ahead = np.minimum(lookup(forward, low), lookup(forward, high))  # the nearest wall cell beyond, per body
    behind = np.maximum(lookup(backward, low), lookup(backward, high))
    upper = ahead - 0.5 - RADIUS  # the furthest centre coordinate before touching that wall
    lower = behind + 0.5 + RADIUS
    blocked = (target > upper) | (target < lower)
    p[:, axis] = np.clip(target, lower, upper)
    v[blocked, axis] = 0.0  # an inelastic contact
    return p, v


def step(maze: Maze, p: np.ndarray, v: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of N bodies: positions p (N, 2), velocities v (N, 2), actions u (N, 2) clipped to [-1, 1].
    Returns the new (p, v) (module docstring)."""
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    v = (1.0 - DRAG * DT) * np.asarray(v, dtype=np.float64) + ACCEL * DT * u  # semi-implicit Euler velocity
    p, v = sweep(maze, np.asarray(p, dtype=np.float64), v, axis=0)
    return sweep(maze, p, v, axis=1)


def speed_bound(speed: np.ndarray | float) -> np.ndarray | float:
    """The largest speed one step can reach from `speed`: (1 - DRAG DT) speed + sqrt(2) ACCEL DT."""
    return (1.0 - DRAG * DT) * speed + np.sqrt(2.0) * ACCEL * DT


def is_maze_config(config) -> bool:
    """Whether a run config trains on maze trajectories (the `maze` dataset)."""
    return config.spec.modality == "trajectory" and config.data.name == "maze"


def parse_point(what: str, text) -> tuple[float, float]:
    """'x,y' (maze cells) -> (x, y), or a one-line error naming `what` (a flag or a form field)."""
    try:
        x, y = (float(part) for part in str(text).split(","))
    except ValueError:
        raise UnnoiseError(f"{what} must be two numbers x,y, got {text!r}") from None
    return x, y
