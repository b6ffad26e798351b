"""Progressive distillation's rounds, and any student's training: `distill_run` trains a student of a run,
progressive N -> N/2 -> ... -> nfe with each round its own run (the last in OUT, the others in
OUT/rounds/steps-N), every round resumable; the command `unnoise distill` calls it."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import UnnoiseError
from .distill import METHODS, _bad, student_config

log = logging.getLogger("unnoise.distill")


def round_steps(start_steps: int, nfe: int) -> list[int]:
    """The student step counts of progressive rounds from a `start_steps`-step teacher down to `nfe`."""
    if nfe < 1 or start_steps <= nfe or start_steps % nfe or (start_steps // nfe) & (start_steps // nfe - 1):
        raise UnnoiseError(f"progressive rounds halve the teacher's steps: --teacher-steps {start_steps} must be "
                           f"nfe ({nfe}) times a power of two >= 2")
    steps, rounds = start_steps // 2, []
    while steps >= nfe:
        rounds.append(steps)
        steps //= 2
    return rounds


def round_dir(out: Path, steps: int, final: bool) -> Path:
    """Where the round training an N-step student lives: `out` for the last round, out/rounds/steps-N before."""
    return Path(out) if final else Path(out) / "rounds" / f"steps-{steps:04d}"


def distill_run(teacher_dir: Path, out: Path, method: str, *, nfe: int = 4, teacher_steps: int = 64,
                train: dict | None = None, init: bool = True, recipe: dict | None = None, device=None) -> dict:
    """Train a student of `teacher_dir` into `out` (progressive: a run per round, the last in `out`);
    a round already finished is kept, one interrupted is resumed. Returns {rounds: [...], seconds}."""
    from .training import train_run

    if method not in METHODS:
        raise _bad("method", method, f"valid: {', '.join(METHODS)}")
    plan = round_steps(teacher_steps, nfe) if method == "progressive" else [nfe]
    teacher, summary, t0 = Path(teacher_dir), [], time.perf_counter()
    for steps in plan:
        run_dir = round_dir(out, steps, steps == plan[-1])
        config = student_config(teacher, method, steps=steps, train=train, init=init, recipe=recipe)
        done = _finished_step(run_dir)
        if done is not None:
            _check_same_student(run_dir, config)
        if done is None or done < config.train.steps:
            log.info("distill %s: %d-step student of %s in %s", method, steps, teacher, run_dir)
            resume = done is not None  # an interrupted round continues from its own saved config
            result = train_run(None if resume else config, run_dir, resume=resume,
                               steps=config.train.steps if resume else None, device=device)
            summary.append({"steps": steps, "run": str(run_dir), "seconds": round(result["seconds"], 1)})
        else:
            summary.append({"steps": steps, "run": str(run_dir), "seconds": 0.0, "kept": True})
        teacher = run_dir
    return {"method": method, "rounds": summary, "seconds": round(time.perf_counter() - t0, 1)}


def _finished_step(run_dir: Path) -> int | None:
    """The step of a run directory's newest checkpoint, or None when it holds no run yet."""
    from .guard import checkpoint_step, is_run_dir

    if not is_run_dir(run_dir) or not (Path(run_dir) / "config.json").is_file():
        return None
    try:
        return checkpoint_step(run_dir)
    except UnnoiseError:
        return None


def _check_same_student(run_dir: Path, config) -> None:
    """Refuse to resume a directory holding another run than this round's student."""
    from .load import read_run_config

    saved = read_run_config(run_dir).model.distill
    wanted = config.model.distill
    if any(saved.get(key) != wanted.get(key) for key in ("method", "teacher", "steps")):
        raise UnnoiseError(f"{run_dir} holds another run (model.distill {saved.get('method')!r} of "
                           f"{saved.get('teacher')!r}); name a new --out")
