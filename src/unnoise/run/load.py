"""Read a trained run directory: its config, and its denoiser with the EMA (or raw) weights on a device."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UnnoiseError
from ..param import Denoiser
from .build import build_denoiser
from .checkpoint import read_checkpoint_tensors
from .config import SECTIONS, RunConfig, config_from_dict

WEIGHTS = ("ema", "model")


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved config of a run directory (RUN/config.json); one-line errors for a missing or bad one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UnnoiseError(f"run directory not found: {run_dir}")
    path = run_dir / "config.json"
    if not path.is_file():
        raise UnnoiseError(f"{run_dir}: not a run directory (missing {path.name})")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except json.JSONDecodeError as exc:
        raise UnnoiseError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UnnoiseError(f"{path}: not a text file (invalid UTF-8)") from None
    missing = [s for s in SECTIONS if isinstance(saved, dict) and s not in saved]
    if missing:  # a saved run records every section: a missing one would silently take the defaults
        raise UnnoiseError(f"{path}: section {missing[0]!r} is missing (a run's config.json records every "
                           f"section: {', '.join(SECTIONS)})")
    return config_from_dict(saved, where=str(path))


def load_run(run_dir: Path, weights: str = "ema", device: torch.device | None = None) -> tuple[Denoiser, RunConfig]:
    """The trained denoiser of a run directory (EMA weights by default), in eval mode, on `device`
    (default: the host)."""
    if weights not in WEIGHTS:
        raise UnnoiseError(f"weights must be 'ema' or 'model', got {weights!r}")
    config = read_run_config(run_dir)
    denoiser = build_denoiser(config)
    state = read_checkpoint_tensors(Path(run_dir), f"{weights}.safetensors")
    try:
        denoiser.net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UnnoiseError(f"{run_dir}: weights do not match config.json ({first})") from None
    if device is not None:
        denoiser = denoiser.to(device)
    return denoiser.eval(), config
