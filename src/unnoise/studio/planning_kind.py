"""Maze trajectory runs in the studio: plan from a start to a goal (x,y in maze cells), execute the plan with
the PD controller, and show the maze with every plan and the executed path. The picture carries the job's
settings; its record says whether and when the goal was reached."""
from __future__ import annotations

from ..planning.maze import is_maze_config
from .builtin import MAX_SEED, sampler_fields
from .fields import Field
from .kinds import Form, Kind, register_kind
from .media import picture_tensor


def plan_fields(config) -> list[Field]:
    return [Field("start", "text", "Start x,y (maze cells)", "1,1"), Field("goal", "text", "Goal x,y (maze cells)", "3,1"),
            *sampler_fields(config), Field("replan_every", "int", "Replan every (steps)", 32, 1, 1000),
            Field("episode_steps", "int", "Episode steps", None, 1, 10000, optional=True,
                  help="empty: the layout's D4RL limit"),
            Field("seed", "int", "Seed", 0, 0, MAX_SEED)]


def check_plan(config, params, images) -> None:
    """Submission-time checks: start and goal are points inside the maze's free cells."""
    from ..planning.maze import make_maze, parse_point

    maze = make_maze(config.data.options.get("layout", "umaze"))
    for name in ("start", "goal"):
        maze.check_position(parse_point(f"field {name!r}", params[name]), f"field {name!r}")


def plan(ctx) -> None:
    from ..pipeline import SampleRequest
    from ..planning.maze import parse_point
    from ..planning.planner import plan_episode

    params = ctx.params
    ctx.start(1)
    drawing = ctx.path("plan-drawing.png")
    done = plan_episode(ctx.pipe, parse_point("field 'start'", params["start"]),
                        parse_point("field 'goal'", params["goal"]), drawing,
                        request=SampleRequest(sampler=params.get("sampler"), nfe=params.get("nfe")),
                        replan_every=params["replan_every"], seed=params["seed"],
                        episode_steps=params.get("episode_steps"),
                        where=("field 'start'", "field 'goal'"))
    image = picture_tensor(drawing)
    drawing.unlink()
    ctx.write_png("000.png", image, seed=params["seed"], reached_at=done["reached_at"], plans=done["plans"])
    ctx.advance()


register_kind(Kind("maze", is_maze_config,
                   (Form("plan", "Plan", plan_fields, plan, check=check_plan),),
                   "maze trajectories: plan from a start to a goal"))
