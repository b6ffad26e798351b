"""The maze point mass: D4RL layouts, swept collisions that never cross a wall at any speed, energy bounds,
A*, and the expert (A* + PD) reaching every goal."""
import math

import numpy as np
import pytest

from unnoise.errors import UnnoiseError
from unnoise.planning.control import EPISODE_STEPS, Expert, astar, rollout, start_goal_pairs
from unnoise.planning.maze import ACCEL, DRAG, DT, LAYOUTS, RADIUS, TOUCH, make_maze, speed_bound, step

FREE_CELLS = {"umaze": 7, "medium": 26, "large": 46}  # counted by hand from D4RL's layout strings


def wall_overlap(maze, x_lo, x_hi, y_lo, y_hi) -> np.ndarray:
    """Per box (arrays (B,)), the largest overlap (per axis, the smaller of the two) with any wall cell."""
    i, j = np.argwhere(maze.walls).T  # (K,)
    dx = np.minimum(x_hi[:, None], j + 0.5) - np.maximum(x_lo[:, None], j - 0.5)  # (B, K)
    dy = np.minimum(y_hi[:, None], i + 0.5) - np.maximum(y_lo[:, None], i - 0.5)
    return np.minimum(dx, dy).max(1)


def connected(maze) -> bool:
    cells = maze.free_cells()
    seen, todo = {cells[0]}, [cells[0]]
    while todo:
        i, j = todo.pop()
        for nxt in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if not maze.walls[nxt] and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == len(cells)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layouts_are_d4rl_grids(name):
    maze = make_maze(name)
    assert len(maze.free_cells()) == FREE_CELLS[name]
    assert maze.walls[0].all() and maze.walls[-1].all() and maze.walls[:, 0].all() and maze.walls[:, -1].all()
    assert connected(maze)


def test_umaze_walls_match_the_d4rl_string():
    assert [''.join('#' if w else 'O' for w in row) for row in make_maze("umaze").walls] == \
        ["#####", "#OOO#", "###O#", "#OOO#", "#####"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_no_wall_crossing_at_any_speed(name):
    """Bodies with speeds up to 10^4 cells/s: each axis sweep's swept box never overlaps a wall."""
    maze, rng = make_maze(name), np.random.default_rng(0)
    free = np.array([[j, i] for i, j in maze.free_cells()], dtype=np.float64)
    p = free[rng.integers(len(free), size=64)] + rng.uniform(-0.4 + RADIUS, 0.4 - RADIUS, size=(64, 2))
    for _ in range(40):
        v = rng.standard_normal((64, 2)) * 10.0 ** rng.uniform(-1, 4, size=(64, 1))
        u = rng.uniform(-3, 3, size=(64, 2))
        p_next, v_next = step(maze, p, v, u)
        x0, y0, x1, y1 = p[:, 0], p[:, 1], p_next[:, 0], p_next[:, 1]
        # the x sweep at the old y, then the y sweep at the new x
        assert np.all(wall_overlap(maze, np.minimum(x0, x1) - RADIUS, np.maximum(x0, x1) + RADIUS,
                                   y0 - RADIUS, y0 + RADIUS) <= TOUCH)
        assert np.all(wall_overlap(maze, x1 - RADIUS, x1 + RADIUS, np.minimum(y0, y1) - RADIUS,
                                   np.maximum(y0, y1) + RADIUS) <= TOUCH)
        p = p_next


def test_a_fast_body_stops_flush_against_the_wall():
    maze = make_maze("umaze")  # row 1: free cells at x = 1, 2, 3; wall at x = 4
    p, v = step(maze, np.array([[1.0, 1.0]]), np.array([[1e6, 0.0]]), np.zeros((1, 2)))
    assert p[0, 0] == 4 - 0.5 - RADIUS and p[0, 1] == 1.0 and v[0, 0] == 0.0
    p, v = step(maze, np.array([[3.0, 1.0]]), np.array([[0.0, 1e6]]), np.zeros((1, 2)))  # down the corridor
    assert p[0, 1] == 4 - 0.5 - RADIUS and v[0, 1] == 0.0


def test_free_flight_is_the_semi_implicit_euler_step():
    maze = make_maze("large")
    p, v, u = np.array([[3.0, 3.0]]), np.array([[0.3, -0.2]]), np.array([[0.5, -1.0]])
    p_next, v_next = step(maze, p, v, u)
    v_expected = (1 - DRAG * DT) * v + ACCEL * DT * u
    assert np.array_equal(v_next, v_expected)
    assert np.array_equal(p_next, p + v_expected * DT)


@pytest.mark.parametrize("name", ["umaze", "large"])
def test_energy_bounds(name):
    """|v'| <= (1 - DRAG DT)|v| + sqrt(2) ACCEL DT every step, collisions only remove kinetic energy, and
    from rest the speed never exceeds the terminal speed sqrt(2) ACCEL / DRAG."""
    maze, rng = make_maze(name), np.random.default_rng(1)
    p = np.tile([[1.0, 1.0]], (32, 1))
    v = np.zeros_like(p)
    terminal = math.sqrt(2) * ACCEL / DRAG
    for _ in range(300):
        u = rng.uniform(-1, 1, size=p.shape) * (rng.uniform(size=(32, 1)) < 0.9)
        free = (1 - DRAG * DT) * v + ACCEL * DT * u
        p, v_next = step(maze, p, v, u)
        speed, speed_next = np.linalg.norm(v, axis=1), np.linalg.norm(v_next, axis=1)
        assert np.all(speed_next <= speed_bound(speed) * (1 + 4 * np.finfo(float).eps))
        assert np.all(np.abs(v_next) <= np.abs(free))  # a contact zeroes a component, never adds
        assert np.all(speed_next <= terminal * (1 + 4 * np.finfo(float).eps))
        v = v_next


def test_astar_shortest_path_in_the_umaze():
    maze = make_maze("umaze")
    assert astar(maze, (1, 1), (3, 1)) == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_expert_reaches_every_goal(name):
    maze = make_maze(name)
    pairs = start_goal_pairs(maze, 32, seed=7)
    starts, goals = np.stack([s for s, _ in pairs]), np.stack([g for _, g in pairs])
    result = rollout(maze, Expert(maze), starts, goals, EPISODE_STEPS[name])
    assert result.success.all()
    assert np.all(np.linalg.norm(result.positions[:, -1] - goals, axis=1) <= 0.5)  # and stays there


@pytest.mark.parametrize("point,fragment", [((2.0, 2.0), "inside a wall"), ((9.0, 1.0), "outside the umaze"),
                                            ((1.0, float("nan")), "two finite numbers")])
def test_bad_positions_are_one_line_errors(point, fragment):
    with pytest.raises(UnnoiseError, match=fragment):
        make_maze("umaze").check_position(point, "--start")


def test_unknown_layout():
    with pytest.raises(UnnoiseError, match="unknown maze layout 'small'"):
        make_maze("small")


def test_maze_dataset_spec_and_bad_options():
    from unnoise.data import load_dataset

    data = load_dataset("maze", layout="umaze", horizon=16, walks=2, steps=40, stride=8)
    assert data.spec.modality == "trajectory" and data.shape == (6, 16) and len(data) == 2 * 4
    assert float(data.x[:, 4:].abs().max()) <= 1.0  # actions are forces in [-1, 1]
    with pytest.raises(UnnoiseError, match="unknown layout 'tiny'"):
        load_dataset("maze", layout="tiny")
    with pytest.raises(UnnoiseError, match="shorter than the horizon 64"):
        load_dataset("maze", horizon=64, walks=1, steps=40)
    with pytest.raises(UnnoiseError, match="stride must be a positive integer"):
        load_dataset("maze", stride=0)
