"""ControlNet runs: a control branch (nn/controlnet.py) trained on a trained, frozen base run.

A run whose model.conditions holds `control` names its base in model.init_from.run. `control_config`
takes the base's network, process, parameterization and conditions (the control run adds `control`),
and records the SHA-256 of the base's EMA weights in model.init_from.sha256; `init_control` loads those
weights (checking the hash) into the frozen base and copies a fresh ControlNet from them. Only the
ControlNet trains (objectives/control.py), and the saved run holds both parts, so it loads alone.

    unnoise train --preset shapes-control --set model.init_from.run=runs/shapes --out runs/shapes-edges
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import UnnoiseError
from .checkpoint import read_checkpoint_tensors
from .config import RunConfig

BASE_FIELDS = ("network", "network_options", "process", "process_options", "prediction", "sigma_data",
               "learned_variance", "text_max_tokens", "text_layers", "lowres_factor", "codec")
BASE_TRAIN_FIELDS = ("density", "p_mean", "p_std", "weighting", "min_snr_gamma")  # the base's noise levels and loss


def is_control_config(config: RunConfig) -> bool:
    return "control" in config.model.conditions


class _Tensors:
    """A tensor dict seen as a module's state (for weights_sha256)."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def state_dict(self) -> dict:
        return self.tensors


def tensors_sha256(tensors: dict) -> str:
    """SHA-256 of named tensors, the same digest as sample.auto.cache.weights_sha256 of a module holding them."""
    from ..sample.auto.cache import weights_sha256

    return weights_sha256(_Tensors(tensors))


def base_dir_of(config: RunConfig) -> Path:
    init = config.model.init_from
    if not init or not init.get("run"):
        raise UnnoiseError("a control run (model.conditions: control) trains on a base run: "
                           "--set model.init_from.run=BASE_RUN")
    if init.get("mode", "frozen") != "frozen":
        raise UnnoiseError(f"model.init_from.mode: a control run keeps its base frozen, got {init['mode']!r}")
    return Path(init["run"])


def _base_config(config: RunConfig, base_dir: Path):
    from .load import read_run_config

    base = read_run_config(base_dir)
    if is_control_config(base):
        raise UnnoiseError(f"model.init_from.run: {base_dir} is itself a control run; give its base run")
    if base.model.network != "unet":
        raise UnnoiseError(f"model.init_from.run: a ControlNet needs a U-Net base, {base_dir} has "
                           f"model.network={base.model.network!r}")
    if base.data.name != config.data.name:
        raise UnnoiseError(f"data.name: the base run {base_dir} was trained on {base.data.name!r}, not "
                           f"{config.data.name!r}")
    return base


def control_config(config: RunConfig) -> RunConfig:
    """The config of a control run with its base's model fields and the base weights' hash filled in;
    one-line errors for a missing or unsuitable base, for options that contradict it, and for a base whose
    weights changed since the hash was recorded."""
    m, base_dir = config.model, base_dir_of(config)
    base_config = _base_config(config, base_dir)
    base = base_config.model
    extra = [c for c in m.conditions if c != "control" and c not in base.conditions]
    if extra:
        raise UnnoiseError(f"model.conditions: {extra[0]!r} is not a condition of the base run {base_dir} "
                           f"({', '.join(base.conditions) or 'none'})")
    clash = [k for k, v in m.network_options.items() if base.network_options.get(k, v) != v]
    if clash:
        raise UnnoiseError(f"model.network_options.{clash[0]}: a control run uses its base's network "
                           f"({base.network_options.get(clash[0])!r}), got {m.network_options[clash[0]]!r}")
    sha256 = tensors_sha256(read_checkpoint_tensors(base_dir, "ema.safetensors"))
    recorded = m.init_from.get("sha256")
    if recorded not in (None, sha256):
        raise UnnoiseError(f"model.init_from.run: the weights of {base_dir} changed since this control run "
                           f"recorded them (sha256 {recorded[:12]}..., now {sha256[:12]}...)")
    model = dataclasses.replace(m, **{field: getattr(base, field) for field in BASE_FIELDS},
                                conditions=(*base.conditions, "control"),
                                init_from={"run": str(base_dir), "mode": "frozen", "sha256": sha256})
    train = dataclasses.replace(config.train, **{f: getattr(base_config.train, f) for f in BASE_TRAIN_FIELDS})
    return dataclasses.replace(config, model=model, train=train)


def init_control(net, config: RunConfig) -> str:
    """Load the base run's EMA weights (hash checked) into the frozen `net.base`, and copy a fresh
    ControlNet from them; returns the base's SHA-256."""
    from ..nn.controlnet import ControlNet

    from .load import read_run_config

    base_dir, recorded = base_dir_of(config), config.model.init_from.get("sha256")
    base_shape = tuple(read_run_config(base_dir).data_shape)
    if tuple(config.data_shape) != base_shape:
        raise UnnoiseError(f"data.options: the base run {base_dir} was trained on data of shape {base_shape}, "
                           f"this run's is {tuple(config.data_shape)}")
    state = read_checkpoint_tensors(base_dir, "ema.safetensors")
    sha256 = tensors_sha256(state)
    if recorded is not None and recorded != sha256:
        raise UnnoiseError(f"model.init_from.run: the weights of {base_dir} changed since this control run "
                           f"recorded them (sha256 {recorded[:12]}..., now {sha256[:12]}...)")
    try:
        net.base.load_state_dict(state)
    except RuntimeError as exc:
        raise UnnoiseError(f"{base_dir}: its weights do not fit the control run's base network "
                           f"({str(exc).splitlines()[0]})") from None
    net.control = ControlNet.from_unet(net.base, net.control.control_channels,
                                       net.control.downsample // net.base.config.patch_size)
    net.base.requires_grad_(False)
    return sha256


def check_base(net, config: RunConfig) -> None:
    """One-line error unless the controlled network's base weights hash to what the run recorded."""
    from ..sample.auto.cache import weights_sha256

    recorded = config.model.init_from.get("sha256")
    found = weights_sha256(net.base)
    if found != recorded:
        raise UnnoiseError(f"the control run's base weights changed (sha256 {found[:12]}..., recorded "
                           f"{str(recorded)[:12]}...)")
