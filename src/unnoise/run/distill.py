"""Few-step students of a trained run: their recipe (model.distill), objective, config and rounds.

A student is an ordinary run whose config records, in model.distill, how it is trained:
    progressive            {method, teacher, steps: N, weighting, sigmas: [N + 1], teacher_sigmas: [2N + 1]}
    consistency            {method, teacher, sigma_min, sigma_max, rho, discretization_start/end, target_ema,
                            index_density, weighting, p_mean, p_std, huber_c, curriculum_steps}
    consistency-training   the same without a teacher (objectives/consistency.py)
and, with a teacher, `guidance`: the teacher's classifier-free guidance scale baked into what the student
learns (default 1: none; the student then samples with sample.guidance 1).
`resolve_distill_config` fills in every default once, when the run starts, so the saved config holds the
whole step schedule (the progressive grids, the consistency curriculum's K) and a resumed run reads it
back instead of recomputing it from settings that may have changed. Progressive distillation runs in
rounds, each its own run (run/distill_rounds.py).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..errors import UnnoiseError
from ..grids import sigma_grid
from ..objectives.consistency import INDEX_DENSITIES, ConsistencyObjective, default_huber_c
from ..objectives.consistency import WEIGHTINGS as CONSISTENCY_WEIGHTINGS
from ..objectives.progressive import WEIGHTINGS as PROGRESSIVE_WEIGHTINGS
from ..objectives.progressive import ProgressiveObjective, check_student_prediction
from ..process import make_process
from ..sample.consistency import CONSISTENCY_METHODS
from .config import RunConfig, config_from_dict, config_to_dict

METHODS = ("progressive", *CONSISTENCY_METHODS)
PROGRESSIVE_KEYS = ("method", "teacher", "steps", "weighting", "sigmas", "teacher_sigmas", "guidance")
CONSISTENCY_KEYS = ("method", "teacher", "sigma_min", "sigma_max", "rho", "discretization_start",
                    "discretization_end", "target_ema", "index_density", "weighting", "p_mean", "p_std", "huber_c",
                    "curriculum_steps", "guidance")
# (discretization intervals start, end, target EMA mu): distillation at N = 18 with mu = 0.95 (Song et al.
# 2023); training with the improved curriculum 10 -> 1280 and no target EMA (Song & Dhariwal 2023)
CONSISTENCY_DEFAULTS = {"consistency": (17, 17, 0.95), "consistency-training": (10, 1280, 0.0)}


def _bad(key: str, value, why: str) -> UnnoiseError:
    return UnnoiseError(f"model.distill.{key}={value!r}: {why}")


def check_recipe(recipe: dict) -> None:
    """One-line errors for a model.distill mapping's method, keys and values (defaults may be missing)."""
    method = recipe.get("method")
    if method not in METHODS:
        raise _bad("method", method, f"valid: {', '.join(METHODS)}")
    valid = PROGRESSIVE_KEYS if method == "progressive" else CONSISTENCY_KEYS
    unknown = sorted(set(recipe) - set(valid))
    if unknown:
        raise _bad(unknown[0], recipe[unknown[0]], f"not a {method} setting; valid: {', '.join(valid)}")
    if method != "consistency-training" and not isinstance(recipe.get("teacher"), str):
        raise _bad("teacher", recipe.get("teacher"), f"{method} needs the teacher run's directory")
    if "guidance" in recipe and not (_number(recipe["guidance"]) and recipe["guidance"] >= 0):
        raise _bad("guidance", recipe["guidance"], "the teacher's classifier-free guidance scale, a number >= 0")
    if recipe.get("guidance", 1.0) != 1.0 and method == "consistency-training":
        raise _bad("guidance", recipe["guidance"], "consistency training has no teacher to guide")
    if method == "progressive":
        steps = recipe.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise _bad("steps", steps, "the student's step count, an integer >= 1")
        if recipe.get("weighting", "snr+1") not in PROGRESSIVE_WEIGHTINGS:
            raise _bad("weighting", recipe["weighting"], f"valid: {', '.join(PROGRESSIVE_WEIGHTINGS)}")
        return
    _check_consistency_values(recipe)


def _check_consistency_values(recipe: dict) -> None:
    for key in ("sigma_min", "sigma_max", "rho", "p_std", "huber_c"):
        if key in recipe and not (_number(recipe[key]) and recipe[key] > 0):
            raise _bad(key, recipe[key], "must be a number > 0")
    for key in ("discretization_start", "discretization_end", "curriculum_steps"):
        if key in recipe and not (isinstance(recipe[key], int) and not isinstance(recipe[key], bool) and recipe[key] >= 1):
            raise _bad(key, recipe[key], "must be an integer >= 1")
    if recipe.get("discretization_end", 1) < recipe.get("discretization_start", 1):
        raise _bad("discretization_end", recipe["discretization_end"], "must be >= discretization_start")
    if "target_ema" in recipe and not (_number(recipe["target_ema"]) and 0 <= recipe["target_ema"] < 1):
        raise _bad("target_ema", recipe["target_ema"], "must be in [0, 1)")
    if "p_mean" in recipe and not _number(recipe["p_mean"]):
        raise _bad("p_mean", recipe["p_mean"], "must be a number")
    if recipe.get("index_density", "lognormal") not in INDEX_DENSITIES:
        raise _bad("index_density", recipe["index_density"], f"valid: {', '.join(INDEX_DENSITIES)}")
    if recipe.get("weighting", "inverse_gap") not in CONSISTENCY_WEIGHTINGS:
        raise _bad("weighting", recipe["weighting"], f"valid: {', '.join(CONSISTENCY_WEIGHTINGS)}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resolve_distill_config(config: RunConfig) -> RunConfig:
    """The config with model.distill's defaults and step schedule filled in (unchanged for an ordinary run
    and for values already recorded, so a resumed run keeps its schedule)."""
    recipe = dict(config.model.distill)
    if not recipe:
        return config
    check_recipe(recipe)
    m = config.model
    process = make_process(m.process, **m.process_options)
    if recipe["method"] == "progressive":
        recipe = _progressive_recipe(recipe, process, m.prediction)
    else:
        recipe = _consistency_recipe(recipe, process, config)
    return dataclasses.replace(config, model=dataclasses.replace(m, distill=recipe))


def _progressive_recipe(recipe: dict, process, prediction: str) -> dict:
    """Record the student's grid (the nested grid of `steps`) and the teacher's (twice the steps)."""
    steps = recipe["steps"]
    check_student_prediction(prediction, steps)
    student = sigma_grid("nested", process, steps)
    teacher = sigma_grid("nested", process, 2 * steps)
    recipe.setdefault("weighting", "snr+1")
    recorded = {"sigmas": student, "teacher_sigmas": teacher}
    for key, grid in recorded.items():
        if key in recipe and not torch.equal(torch.tensor(recipe[key], dtype=torch.float64), grid):
            raise _bad(key, "[...]", f"differs from the nested {len(grid) - 1}-step grid of this process, which "
                                     "the student is sampled on (was the process changed?)")
        recipe[key] = grid.tolist()
    return recipe


def _consistency_recipe(recipe: dict, process, config: RunConfig) -> dict:
    if config.model.learned_variance:
        raise UnnoiseError("model.learned_variance: a consistency student has no reverse variance; distill a run "
                           "without learned variances, or use --method progressive")
    start, end, mu = CONSISTENCY_DEFAULTS[recipe["method"]]
    defaults = {"sigma_min": process.sigma_min, "sigma_max": process.sigma_max, "rho": 7.0,
                "discretization_start": start, "discretization_end": end, "target_ema": mu,
                "index_density": "lognormal", "weighting": "inverse_gap", "p_mean": -1.1, "p_std": 2.0,
                "huber_c": default_huber_c(config.data_shape or (1,)), "curriculum_steps": config.train.steps}
    return {**defaults, **recipe}


def load_teacher(path: str):
    """The teacher run's EMA denoiser, frozen, in eval mode (on the host; objectives move it)."""
    from .load import load_run

    if not Path(path).is_dir():
        raise _bad("teacher", path, "no such run directory")
    teacher, _ = load_run(Path(path), "ema")
    return teacher.requires_grad_(False).eval()


def distill_objective(config: RunConfig, denoiser, conditions):
    """The objective of a student run (its model.distill already resolved)."""
    recipe = config.model.distill
    method, dropout = recipe["method"], config.train.cond_dropout
    teacher = None if method == "consistency-training" else load_teacher(recipe["teacher"])
    teacher = guided_teacher(teacher, conditions, recipe.get("guidance", 1.0))
    if method == "progressive":
        return ProgressiveObjective(denoiser, teacher, conditions, torch.tensor(recipe["sigmas"], dtype=torch.float64),
                                    torch.tensor(recipe["teacher_sigmas"], dtype=torch.float64),
                                    weighting=recipe["weighting"], cond_dropout=dropout)
    return ConsistencyObjective(denoiser, teacher, conditions, recipe, recipe["curriculum_steps"], cond_dropout=dropout)


def guided_teacher(teacher, conditions, scale: float):
    """The teacher with classifier-free guidance at `scale` baked in (the student learns the guided output
    and samples unguided), or the teacher itself at scale 1."""
    if teacher is None or scale == 1.0:
        return teacher
    if not conditions.guidable:
        raise _bad("guidance", scale, "the teacher has no condition to guide (a conditional run trained with "
                                      "condition dropout)")
    from ..guide import cfg

    return cfg(teacher, scale, conditions.null)


def student_config(teacher_dir: Path, method: str, *, steps: int = 1, train: dict | None = None,
                   init: bool = True, recipe: dict | None = None) -> RunConfig:
    """A student's config from its teacher's: the same data and network, initialised from the teacher's
    EMA weights (`init`), `train` overriding the training section, sampling with the student's sampler
    for `steps` steps on the nested grid."""
    from .load import read_run_config

    d = config_to_dict(read_run_config(teacher_dir))
    d["model"]["init_from"] = {"run": str(teacher_dir), "mode": "copy"} if init else {}
    distill = {"method": method, **(recipe or {})}
    if method != "consistency-training":
        distill["teacher"] = str(teacher_dir)
    if method == "progressive":
        distill["steps"] = steps
    d["model"]["distill"] = distill
    d["train"].update(train or {})
    d["sample"].update(sampler="progressive" if method == "progressive" else "consistency", steps=steps,
                       grid="nested")
    if distill.get("guidance", 1.0) != 1.0:
        d["sample"]["guidance"] = 1.0  # the guided output is the student's own: no guidance on top
    return config_from_dict(d, where="student config")
