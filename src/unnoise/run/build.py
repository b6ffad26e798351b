"""Build the pieces of a run from its resolved config, and load a trained run for sampling."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..conditions import check_conditions, conditions_for
from ..device import PRECISIONS
from ..errors import UnnoiseError
from ..nn import build_network
from ..param import Denoiser
from ..process import make_process
from ..sample.consistency import CONSISTENCY_METHODS, ConsistencyDenoiser
from .config import RunConfig
from .latent import is_autoencoder_config, resolve_autoencoder_config, resolve_codec
from .molecules import check_molecule_config
from .text import check_text_config, is_text_config, text_network_options, tokenizer_summary


def resolve_config(config: RunConfig, shape: tuple, num_classes: int, levels: int = 0, class_names=(),
                   sample_rate: int = 0, modality: str = "", data_dtype: str = "float32", vocab_size: int = 0,
                   tokenizer: dict | None = None) -> RunConfig:
    """Fill the network's input size and classes from the data, so the saved config is complete;
    `modality`, `data_dtype` and `vocab_size` come from the dataset's DataSpec, `tokenizer` (token data:
    its to_dict()) from the dataset."""
    check_options(config)
    if is_autoencoder_config(config):  # an autoencoder run (run/latent.py)
        return resolve_autoencoder_config(config, shape, modality, data_dtype)
    check_text_config(config, modality, config.data.name)
    check_molecule_config(config, modality)
    if is_text_config(config):
        if config.tokenizer and tokenizer is not None and dict(tokenizer) != config.tokenizer:
            raise UnnoiseError(f"data {config.data.name!r}: its tokenizer ({tokenizer_summary(tokenizer)}) differs "
                               f"from the run's ({tokenizer_summary(config.tokenizer)}); the texts changed")
        options = text_network_options(config, shape, vocab_size)
        model = dataclasses.replace(config.model, network_options=options)
        return dataclasses.replace(config, model=model, data_shape=tuple(shape), modality=modality,
                                   data_dtype=data_dtype, vocab_size=int(vocab_size), tokenizer=dict(tokenizer or {}))
    data_shape = tuple(shape)
    config, shape = resolve_codec(config, shape)  # a latent run's network sees the codec's latent shape
    options = dict(config.model.network_options)
    outputs = 2 if config.model.learned_variance else 1  # the variance output doubles the channels
    if config.model.network == "unet":
        options.setdefault("in_channels", shape[0])
        options.setdefault("image_size", shape[-1])
        options.setdefault("dims", len(shape) - 1)  # (C, H, W) images: 2; (C, L) signals: 1
        if outputs > 1:
            options.setdefault("out_channels", outputs * options["in_channels"])
    elif config.model.network == "wavenet":
        options.setdefault("in_channels", shape[0])
        options.setdefault("length", shape[-1])
        if outputs > 1:
            options.setdefault("out_channels", outputs * options["in_channels"])
    elif config.model.network == "mlp":
        options.setdefault("in_dim", math.prod(shape))
        if outputs > 1:
            options.setdefault("out_dim", outputs * options["in_dim"])
    if "label" in config.model.conditions and num_classes == 0:
        raise UnnoiseError(f"model.class_conditional (model.conditions: label): dataset {config.data.name!r} "
                           f"has no labels")
    resolved = dataclasses.replace(config, data_shape=data_shape, num_classes=num_classes,
                                   class_names=tuple(class_names))
    for key, value in conditions_for(resolved).network_options().items():
        options.setdefault(key, value)
    model = dataclasses.replace(config.model, network_options=options)
    return dataclasses.replace(config, model=model, data_shape=data_shape, num_classes=num_classes,
                               data_levels=levels, class_names=tuple(class_names), sample_rate=int(sample_rate),
                               modality=modality, data_dtype=data_dtype)


def check_options(config: RunConfig) -> None:
    """Cross-field checks: learned variances, the hybrid loss and importance-sampled t live on the
    discrete DDPM chain; precision and accumulation have fixed choices."""
    m, t = config.model, config.train
    if t.precision not in PRECISIONS:
        raise UnnoiseError(f"train.precision: unknown {t.precision!r}; valid: {', '.join(PRECISIONS)}")
    if not isinstance(t.grad_accum, int) or t.grad_accum < 1:
        raise UnnoiseError(f"train.grad_accum must be an integer >= 1, got {t.grad_accum!r}")
    needs_chain = [name for name, on in (("model.learned_variance", m.learned_variance),
                                         ("train.density=importance", t.density == "importance")) if on]
    if needs_chain and m.process != "ddpm":
        raise UnnoiseError(f"{needs_chain[0]} needs model.process=ddpm (the discrete chain), got {m.process!r}")
    if m.learned_variance and m.prediction == "edm":
        raise UnnoiseError("model.learned_variance needs model.prediction eps, x0 or v, got 'edm'")
    check_conditions(m)
    check_init_from(m.init_from)
    if not 0 <= t.cond_dropout < 1:
        raise UnnoiseError(f"train.cond_dropout must be in [0, 1), got {t.cond_dropout}")
    if t.vlb_weight < 0:
        raise UnnoiseError(f"train.vlb_weight must be >= 0, got {t.vlb_weight}")
    if t.vlb_weight > 0 and not m.learned_variance:
        raise UnnoiseError("train.vlb_weight > 0 (the hybrid loss) needs model.learned_variance=true")


INIT_MODES = ("copy", "frozen")


def check_init_from(init: dict) -> None:
    """One-line errors for model.init_from: {"run": PATH, "mode": "copy" | "frozen"}."""
    if not init:
        return
    unknown = sorted(set(init) - {"run", "mode", "sha256"})  # sha256: the source's weights (control runs)
    if unknown or "run" not in init:
        raise UnnoiseError(f"model.init_from: expected {{run: PATH, mode: copy|frozen}}, got {init!r}")
    if init.get("mode", "copy") not in INIT_MODES:
        raise UnnoiseError(f"model.init_from.mode: unknown {init['mode']!r}; valid: {', '.join(INIT_MODES)}")


def build_denoiser(config: RunConfig) -> Denoiser:
    """The denoiser (network + process + parameterization) a resolved config describes; for a text run its
    TextModel (transformer + categorical process + tokenizer, run/text.py)."""
    if is_text_config(config):
        from .text import build_text_model

        return build_text_model(config)
    if is_autoencoder_config(config):
        from .latent import build_autoencoder_model

        return build_autoencoder_model(config)
    m = config.model
    net = build_network(m.network, dict(m.network_options))
    if "control" in m.conditions:  # ControlNet: the frozen base plus its control branch (run/control.py)
        from ..control import controlled_network

        net = controlled_network(net, config)
    process = make_process(m.process, **m.process_options)
    if m.distill.get("method") in CONSISTENCY_METHODS:  # f(x, sigma_min) = x through its output scalings
        sigma_min = float(m.distill.get("sigma_min", process.sigma_min))
        return ConsistencyDenoiser(net, process, m.prediction, m.sigma_data, sigma_min=sigma_min)
    return Denoiser(net, process, m.prediction, m.sigma_data, m.learned_variance)


def require_unconditioned_input(config: RunConfig, run_dir: Path) -> None:
    """Sampling and evaluating from noise alone: not for a super-resolution run, which needs its input."""
    if "lowres" in config.model.conditions:
        raise UnnoiseError(f"{run_dir} is an x{config.model.lowres_factor} super-resolution run and needs a "
                           f"low-resolution image: use `unnoise restore {run_dir} --task sr --input IMG`")
