"""`unnoise train --preset maze-umaze` (a tiny budget) then `unnoise plan`: the picture is written, the
planner's constraints hold in every plan, and bad starts / goals / runs are one-line errors."""
import numpy as np
import pytest

from unnoise.cli.main import main

TINY = ["--set", "train.steps=2", "--set", "data.options.walks=2", "--set", "data.options.steps=100",
        "--set", "data.options.horizon=32", "--set", "model.network_options.base_channels=8",
        "--set", "train.sample_every=0", "--set", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plan") / "run"
    assert main(["train", "--preset", "maze-umaze", "--out", str(run), *TINY]) == 0
    return run


def test_plan_writes_the_picture(maze_run, tmp_path, capsys):
    out = tmp_path / "plan.png"
    argv = ["plan", str(maze_run), "--start", "1,1", "--goal", "1,3", "--out", str(out), "--steps", "2",
            "--episode-steps", "40", "--replan-every", "20"]
    assert main(argv) == 0
    assert out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "umaze:" in printed and "(return" in printed and "2 plans" in printed


def test_plans_start_at_the_state_and_end_at_the_goal(maze_run):
    from unnoise.pipeline import Pipeline, SampleRequest
    from unnoise.planning.maze import make_maze
    from unnoise.planning.planner import DiffusionPlanner, PlanSettings

    maze = make_maze("umaze")
    planner = DiffusionPlanner(Pipeline.load(maze_run, device="cpu"), maze, PlanSettings(SampleRequest(steps=2)))
    p, v, goals = np.array([[1.0, 1.0], [3.2, 2.0]]), np.array([[0.5, 0.0], [0.0, -0.3]]), np.array([[1.0, 3.0]] * 2)
    plans = planner.scale.decode(planner.sample_plans(p, v, goals))
    np.testing.assert_allclose(plans["positions"][:, 0], p, rtol=0, atol=1e-6)  # float32 channels
    np.testing.assert_allclose(plans["velocities"][:, 0], v, rtol=0, atol=1e-6)
    np.testing.assert_allclose(plans["positions"][:, -1], goals, rtol=0, atol=1e-6)
    early = planner.scale.decode(planner.sample_plans(p, v, goals, goal_index=np.array([5, 20])))
    np.testing.assert_allclose(early["positions"][[0, 1], [5, 20]], goals, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flag,value,fragment", [("--start", "2,2", "inside a wall"),
                                                 ("--goal", "7,1", "outside the umaze maze"),
                                                 ("--start", "1;1", "two numbers x,y")])
def test_bad_points_are_one_line_errors(maze_run, tmp_path, user_error, flag, value, fragment):
    points = {"--start": "1,1", "--goal": "1,3", flag: value}
    user_error(["plan", str(maze_run), "--start", points["--start"], "--goal", points["--goal"],
                "--out", str(tmp_path / "p.png")], fragment)


def test_plan_refuses_a_run_of_other_data(tmp_path, user_error, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy2d", "--out", str(run), "--set", "train.steps=1",
                 "--set", "model.network_options.hidden=8", "--set", "train.sample_every=0"]) == 0
    capsys.readouterr()  # the training's progress lines
    user_error(["plan", str(run), "--start", "1,1", "--goal", "1,3", "--out", str(tmp_path / "p.png")],
               "not maze trajectories")


def test_eval_scores_a_maze_run(maze_run, tmp_path, capsys):
    import json

    out = tmp_path / "eval.json"
    assert main(["eval", str(maze_run), "--n", "4", "--steps", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["layout"] == "umaze" and result["pairs"] == 4 and result["expert"]["success_rate"] == 1.0
    assert set(result["diffusion"]) == {"success_rate", "mean_return", "normalised_score"}
