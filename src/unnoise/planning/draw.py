"""Pictures of plans: the maze's walls, a plan's x-y path and the path the body executed, with Pillow.

Paths are (T, 2) arrays of positions in maze units (x = column, y = row; cell centres at integers); row 0
is drawn at the top, like the layout strings in maze.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.files import pillow_draw, pillow_image, save_picture
from .maze import Maze

WALL, FLOOR = (60, 60, 70), (250, 250, 245)
PLAN, EXECUTED = (31, 119, 180), (214, 39, 40)
START, GOAL = (44, 160, 44), (255, 127, 14)


def maze_picture(maze: Maze, cell_pixels: int = 48):
    """A Pillow RGB picture of the maze: wall cells dark, free cells light."""
    rows, cols = maze.shape
    walls = np.where(maze.walls[..., None], np.array(WALL, np.uint8), np.array(FLOOR, np.uint8)).astype(np.uint8)
    grid = np.repeat(np.repeat(walls, cell_pixels, 0), cell_pixels, 1)  # (rows * k, cols * k, 3)
    return pillow_image().fromarray(grid, "RGB")


def _pixels(path: np.ndarray, cell_pixels: int) -> list[tuple[float, float]]:
    """Maze positions (T, 2) -> pixel coordinates (cell (i, j) spans [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5])."""
    path = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    return [((x + 0.5) * cell_pixels, (y + 0.5) * cell_pixels) for x, y in path]


def draw_plan(maze: Maze, path: str | Path, *, plans=(), executed=None, start=None, goal=None,
              cell_pixels: int = 48) -> Path:
    """Write a picture of the maze with plans (each (T, 2), thin blue; later replans drawn over earlier),
    the executed path (thick red), the start (green) and the goal (orange) to `path` (.png/.jpg)."""
    picture = maze_picture(maze, cell_pixels)
    draw = pillow_draw().Draw(picture)
    for plan in plans:
        draw.line(_pixels(plan, cell_pixels), fill=PLAN, width=max(1, cell_pixels // 24))
    if executed is not None:
        draw.line(_pixels(executed, cell_pixels), fill=EXECUTED, width=max(2, cell_pixels // 12))
    for point, colour in ((start, START), (goal, GOAL)):
        if point is not None:
            (cx, cy), r = _pixels(point, cell_pixels)[0], cell_pixels / 6
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=(0, 0, 0))
    return save_picture(picture, path)
