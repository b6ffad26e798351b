"""Build the pieces of a run from its resolved config, and load a trained run for sampling."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .errors import UnnoiseError
from .nn import build_network
from .param import Denoiser
from .process import make_process
from .train.checkpoint import checkpoint_dir, load_weights
from .train.config import RunConfig, config_from_dict


def resolve_config(config: RunConfig, shape: tuple, num_classes: int) -> RunConfig:
    """Fill the network's input size and classes from the data, so the saved config is complete."""
    options = dict(config.model.network_options)
    if config.model.network == "unet":
        options.setdefault("in_channels", shape[0])
        options.setdefault("image_size", shape[-1])
    elif config.model.network == "mlp":
        options.setdefault("in_dim", math.prod(shape))
    if config.model.class_conditional:
        if num_classes == 0:
            raise UnnoiseError(f"model.class_conditional: dataset {config.data.name!r} has no labels")
        options.setdefault("num_classes", num_classes)
    model = dataclasses.replace(config.model, network_options=options)
    return dataclasses.replace(config, model=model, data_shape=tuple(shape), num_classes=num_classes)


def build_denoiser(config: RunConfig) -> Denoiser:
    """The denoiser (network + process + parameterization) a resolved config describes."""
    m = config.model
    net = build_network(m.network, dict(m.network_options))
    process = make_process(m.process, **m.process_options)
    return Denoiser(net, process, m.prediction, m.sigma_data)


def read_run_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UnnoiseError(f"run directory not found: {run_dir}")
    path = run_dir / "config.json"
    if not path.is_file():
        raise UnnoiseError(f"{run_dir}: not a run directory (missing {path.name})")
    try:
        with open(path) as f:
            return config_from_dict(json.load(f), where=str(path))
    except json.JSONDecodeError as exc:
        raise UnnoiseError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def load_run(run_dir: Path, weights: str = "ema") -> tuple[Denoiser, RunConfig]:
    """The trained denoiser of a run directory (EMA weights by default), in eval mode."""
    if weights not in ("ema", "model"):
        raise UnnoiseError(f"weights must be 'ema' or 'model', got {weights!r}")
    config = read_run_config(run_dir)
    denoiser = build_denoiser(config)
    state = load_weights(checkpoint_dir(Path(run_dir)) / f"{weights}.safetensors")
    try:
        denoiser.net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UnnoiseError(f"{run_dir}: weights do not match config.json ({first})") from None
    return denoiser.eval(), config
