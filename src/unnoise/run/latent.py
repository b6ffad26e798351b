"""Autoencoder runs and latent runs (Rombach et al. 2022, "High-resolution image synthesis with latent
diffusion models").

An **autoencoder run** (`model.network: autoencoder`) trains the KL autoencoder of nn/autoencoder.py with
the objective of objectives/autoencoder.py (weights in `train.loss_options`) through the generic trainer.
When training ends, the latent scale of its EMA weights is measured on the training images and the
codec (weights, latent scale, SHA-256) is written to RUN/codec/ (codec/autoencoder.py's format).

A **latent run** (`model.codec: AE_RUN`, or `{run: AE_RUN}`, or `identity`) trains its denoiser on the
scaled latents of that frozen codec: the data is encoded once before training, the network's input size
is the latent shape, and sampling decodes (Pipeline). The resolved config records the codec as
{kind, run, sha256, scale, shift, latent_shape}; a codec that is gone or whose weights changed since is
refused with a one-line error when the run is resumed or loaded.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from pathlib import Path

import torch
from torch import nn

from ..codec import IdentityCodec, load_codec, measure_latent_scale, save_autoencoder
from ..errors import UnnoiseError

log = logging.getLogger("unnoise.train")

AUTOENCODER = "autoencoder"  # model.network of an autoencoder run
CODEC_DIR = "codec"  # RUN/codec/: the trained autoencoder and its latent scale
NETWORK_OPTIONS = ("in_channels", "latent_channels", "factor", "channels", "multipliers", "blocks", "groups")
LOSS_OPTIONS = {"l1_weight": 1.0, "ssim_weight": 1.0, "kl_weight": 1e-6, "gan_start": None, "gan_weight": 0.5,
                "discriminator_lr": 2e-4}
SCALE_IMAGES = 2048  # training images the latent scale is measured on
ENCODE_BATCH = 128


def is_autoencoder_config(config) -> bool:
    """Whether a run config describes an autoencoder run."""
    return config.model.network == AUTOENCODER


def is_latent_config(config) -> bool:
    """Whether a run config describes a diffusion run through a codec (identity included)."""
    return bool(config.model.codec)


# ---- autoencoder runs ------------------------------------------------------------------------------


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnnoiseError(f"{where}={value!r}: must be an integer >= 1")
    return value


def autoencoder_options(options: dict, shape: tuple) -> dict:
    """The KL autoencoder's options with in_channels from the data; one-line errors for unknown names,
    bad values and images the factor does not divide."""
    options = dict(options)
    unknown = sorted(set(options) - set(NETWORK_OPTIONS))
    if unknown:
        raise UnnoiseError(f"model.network_options.{unknown[0]}: not an autoencoder option "
                           f"(valid: {', '.join(NETWORK_OPTIONS)})")
    if options.setdefault("in_channels", shape[0]) != shape[0]:
        raise UnnoiseError(f"model.network_options.in_channels={options['in_channels']!r}: the data has "
                           f"{shape[0]} channels")
    for name in ("in_channels", "latent_channels", "channels", "blocks", "groups"):
        if name in options:
            _positive_int(options[name], f"model.network_options.{name}")
    factor = options.setdefault("factor", 4)
    if factor not in (4, 8) or isinstance(factor, bool):
        raise UnnoiseError(f"model.network_options.factor={factor!r}: must be 4 or 8")
    multipliers = options.get("multipliers")
    levels = int(math.log2(factor)) + 1
    if multipliers is not None:
        if not isinstance(multipliers, (list, tuple)) or len(multipliers) != levels:
            raise UnnoiseError(f"model.network_options.multipliers={multipliers!r}: factor {factor} needs a list "
                               f"of {levels} positive integers")
        options["multipliers"] = [_positive_int(m, "model.network_options.multipliers[]") for m in multipliers]
    if shape[-1] % factor or shape[-2] % factor:
        raise UnnoiseError(f"model.network_options.factor={factor}: does not divide the data's "
                           f"{shape[-2]}x{shape[-1]} images")
    return options


def loss_options(options: dict) -> dict:
    """train.loss_options of an autoencoder run with their defaults; one-line errors for bad ones."""
    unknown = sorted(set(options) - set(LOSS_OPTIONS))
    if unknown:
        raise UnnoiseError(f"train.loss_options.{unknown[0]}: not an autoencoder loss option "
                           f"(valid: {', '.join(LOSS_OPTIONS)})")
    merged = {**LOSS_OPTIONS, **options}
    for name, value in merged.items():
        if name == "gan_start":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise UnnoiseError(f"train.loss_options.gan_start={value!r}: must be null (no GAN) or a step >= 0")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (name == "discriminator_lr" and value == 0):
            bound = "> 0" if name == "discriminator_lr" else ">= 0"
            raise UnnoiseError(f"train.loss_options.{name}={value!r}: must be a finite number {bound}")
    return merged


def check_autoencoder_config(config, shape: tuple, modality: str) -> None:
    """One-line errors for what an autoencoder run cannot take."""
    m = config.model
    if modality not in ("image", "") or len(shape) != 3:
        raise UnnoiseError(f"model.network=autoencoder needs (C, H, W) images; dataset {config.data.name!r} holds "
                           f"{modality or 'other'} data of shape {tuple(shape)}")
    for name, value in (("model.conditions", m.conditions), ("model.codec", m.codec),
                        ("model.learned_variance", m.learned_variance)):
        if value:
            raise UnnoiseError(f"{name}={value!r}: an autoencoder run (model.network=autoencoder) takes none")


def resolve_autoencoder_config(config, shape: tuple, modality: str, data_dtype: str):
    """The resolved config of an autoencoder run: its network options and loss options filled in."""
    check_autoencoder_config(config, shape, modality)
    options = autoencoder_options(config.model.network_options, tuple(shape))
    model = dataclasses.replace(config.model, network_options=options)
    train = dataclasses.replace(config.train, loss_options=loss_options(config.train.loss_options))
    return dataclasses.replace(config, model=model, train=train, data_shape=tuple(shape), modality=modality or "image",
                               data_dtype=data_dtype)


class AutoencoderModel(nn.Module):
    """An autoencoder run's model: `net` is the KL autoencoder (whose weights the run saves). It has no
    denoiser: a pipeline of it encodes and decodes, it does not sample."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions through the posterior mean."""
        return self.net(x)[0]


def build_autoencoder_model(config) -> AutoencoderModel:
    """The (untrained) model of a resolved autoencoder run config."""
    from ..nn.autoencoder import KLAutoencoder

    options = dict(config.model.network_options)
    if "multipliers" in options:
        options["multipliers"] = tuple(options["multipliers"])
    return AutoencoderModel(KLAutoencoder(**options))


def autoencoder_objective(config, net: nn.Module):
    """The autoencoder objective of a resolved run config over `net`."""
    from ..objectives.autoencoder import AutoencoderObjective

    return AutoencoderObjective(net, **loss_options(config.train.loss_options))


def autoencoder_preview(config, run_dir: Path, dataset):
    """The training preview of an autoencoder run: the first sample.n // 2 training images over their
    reconstructions (posterior mean), written to run_dir/samples/step_N.png."""
    count = max(1, config.sample.n // 2)

    @torch.no_grad()
    def preview(net, step: int) -> None:
        from ..io import write_samples

        device = next(net.parameters()).device
        x = dataset.x[torch.arange(count) % len(dataset.x)]
        x_hat = net(x.to(device))[0].clamp(-1, 1).float().cpu()
        write_samples(torch.cat([x, x_hat]), config.spec, Path(run_dir) / "samples" / f"step_{step:07d}.png")

    return preview


def finish_run(trainer, run_dir: Path, summary: dict) -> dict:
    """After training an autoencoder run (on rank 0): measure the latent scale of the EMA weights on up to
    SCALE_IMAGES training images and write the codec to RUN/codec/. Other runs: `summary` unchanged."""
    if trainer.config["model"]["network"] != AUTOENCODER or not trainer.dist.main:
        return summary
    model = trainer.ema.model
    scale = measure_latent_scale(model, trainer.batches.x[:SCALE_IMAGES])
    codec = save_autoencoder(Path(run_dir) / CODEC_DIR, copy.deepcopy(model).cpu(), scale)
    log.info("codec written to %s (latent scale %.5g, shift %.5g, sha256 %s)", codec.path, scale.scale, scale.shift,
             codec.sha256[:16])
    return {**summary, "latent_scale": scale.scale, "latent_shift": scale.shift, "codec_sha256": codec.sha256}


def refuse_sampling(config, run_dir) -> None:
    """Sampling an autoencoder run: a one-line error naming what it can do."""
    if is_autoencoder_config(config):
        run = run_dir or "AE_RUN"
        raise UnnoiseError(f"{run} is an autoencoder run: it encodes and decodes (unnoise reconstruct {run} --input "
                           f"IMG, Pipeline.encode / decode; unnoise eval {run} for PSNR and SSIM); to generate, train "
                           f"a latent run on it: unnoise train --preset landscapes-ldm --set model.codec={run}")


# ---- latent runs -----------------------------------------------------------------------------------

def _codec_run(value) -> Path | None:
    """The autoencoder run a model.codec value names (None: the identity codec)."""
    if isinstance(value, str):
        return None if value == "identity" else Path(value)
    if not isinstance(value, dict) or not value:
        raise UnnoiseError(f"model.codec={value!r}: expected identity, an autoencoder run's directory, or {{run: PATH}}")
    if value.get("kind") == "identity":
        return None
    unknown = sorted(set(value) - {"kind", "run", "sha256", "scale", "shift", "latent_shape"})
    if "run" not in value or not isinstance(value["run"], str) or unknown:
        raise UnnoiseError(f"model.codec={value!r}: expected {{run: PATH}} naming a trained autoencoder run")
    return Path(value["run"])


def load_run_codec(value, device=None):
    """The codec a model.codec value names, on `device`: IdentityCodec, or the autoencoder of a trained
    autoencoder run, refused with a one-line error when it is missing or its weights changed since the
    SHA-256 the value records."""
    run = _codec_run(value)
    if run is None:
        return IdentityCodec()
    expected = value.get("sha256") if isinstance(value, dict) else None
    directory = run / CODEC_DIR
    if not (directory / "codec.json").is_file():
        raise UnnoiseError(f"model.codec: no trained autoencoder at {run} (missing {directory / 'codec.json'}); "
                           f"train one with: unnoise train --preset landscapes-ae --out {run}")
    try:
        return load_codec(directory, expected_sha256=expected, device=device)
    except UnnoiseError as error:
        raise UnnoiseError(f"model.codec: {error}") from None


def resolve_codec(config, shape: tuple) -> tuple:
    """(config with model.codec resolved to its record, the shape the network sees) of a latent run;
    other runs: (config, shape) unchanged."""
    if not is_latent_config(config):
        return config, tuple(shape)
    m = config.model
    if "lowres" in m.conditions:
        raise UnnoiseError("model.codec: super-resolution (model.conditions: lowres) is not for latent runs")
    codec = load_run_codec(m.codec)
    if codec.kind == "identity":
        return dataclasses.replace(config, model=dataclasses.replace(m, codec={"kind": "identity"})), tuple(shape)
    channels = codec.autoencoder.config["in_channels"]
    factor = codec.autoencoder.factor
    if len(shape) != 3 or shape[0] != channels or shape[-1] % factor or shape[-2] % factor:
        raise UnnoiseError(f"model.codec: the autoencoder at {codec.path.parent} takes {channels}-channel images "
                           f"of sides divisible by {factor}; dataset {config.data.name!r} holds {tuple(shape)}")
    latent = tuple(codec.latent_shape(tuple(shape)))
    record = {"kind": "autoencoder", "run": str(codec.path.parent.resolve()), "sha256": codec.sha256,
              "scale": codec.latent_scale.scale, "shift": codec.latent_scale.shift, "latent_shape": list(latent)}
    return dataclasses.replace(config, model=dataclasses.replace(m, codec=record)), latent


def run_codec(config, device=None, run_dir=None):
    """The codec a pipeline of this run decodes with: a latent run's, an autoencoder run's own
    (RUN/codec/, once trained), else the identity."""
    if is_latent_config(config):
        return load_run_codec(config.model.codec, device)
    if is_autoencoder_config(config) and run_dir is not None and (Path(run_dir) / CODEC_DIR / "codec.json").is_file():
        return load_run_codec(str(run_dir), device)
    return IdentityCodec()


@torch.no_grad()
def encode_dataset(config, dataset, device=None):
    """A latent run's training data: a shallow copy of `dataset` whose `x` holds the codec's scaled latents
    (computed once, in batches on `device`, kept on the host); other runs: `dataset` itself."""
    if not is_latent_config(config):
        return dataset
    codec = load_run_codec(config.model.codec, device)
    if codec.kind == "identity":
        return dataset
    log.info("encoding %d images through the autoencoder at %s", len(dataset.x), codec.path.parent)
    latents = [codec.encode(chunk.to(device)).float().cpu() for chunk in dataset.x.split(ENCODE_BATCH)]
    encoded = copy.copy(dataset)
    encoded.x = torch.cat(latents)
    return encoded


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """The latent cells whose f x f pixel block is known in every channel: (B, C, H, W) -> (B, 1, H/f, W/f)."""
    known = mask.bool().all(dim=1, keepdim=True).float()
    return -torch.nn.functional.max_pool2d(-known, factor) > 0.5  # a min-pool: every pixel of the block


def _filled(y: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """The measurement with its unknown pixels set to the mean of its known ones (per image and channel),
    so the encoder does not see the zeros of the mask."""
    on = on.expand_as(y).to(y.dtype)
    mean = (y * on).sum((2, 3), keepdim=True) / on.sum((2, 3), keepdim=True).clamp(min=1)
    return torch.where(on.bool(), y, mean)


def latent_restore(pipe, request, denoiser) -> tuple:
    """Inpainting on a latent run: the known pixels are encoded and the known latent cells (every pixel
    of their block known) are imposed at each step by the chosen method (ddnm by default, repaint,
    tweedie or dps) in latent space; the decoded samples get the known pixels pasted back bit for bit.
    `denoiser` is the pipeline's (null-conditioned for a guidable run). Returns (samples on the host, method,
    steps); other restoration tasks are one-line errors."""
    from ..grids import sigma_grid
    from ..restore.operators import Mask
    from ..restore.sampling import MethodOptions, posterior_samples

    refuse_sampling(pipe.config, pipe.run_dir)
    run = pipe.run_dir or "this latent run"
    if not isinstance(request.operator, Mask) or request.operator.noise_std > 0:
        raise UnnoiseError(f"{run} is a latent run: of the restoration tasks only noiseless inpainting (a mask) "
                           "works on it; the others need a pixel run")
    if request.n < 1:
        raise UnnoiseError(f"n must be >= 1, got {request.n}")
    method, steps = request.method or "ddnm", request.steps or 100
    y = request.y.to(pipe.device).float()
    on = request.operator.on(y)
    factor = pipe.codec.autoencoder.factor
    with torch.no_grad():
        z_known = pipe.codec.encode(_filled(y, on))
        mask = Mask(latent_mask(on.expand_as(y), factor).to(torch.uint8))
        sigmas = sigma_grid(pipe.config.sample.grid, pipe.process, steps)
        z = posterior_samples(denoiser, mask, mask.forward(z_known), pipe.shape, sigmas, method=method,
                              seeds=range(request.seed, request.seed + request.n),
                              options=request.options or MethodOptions(), callback=request.callback,
                              device=pipe.device)
        x = pipe.codec.decode(z).float()
        samples = torch.where(on.expand_as(x), y.expand_as(x), x).cpu()  # known pixels exactly
    if not bool(torch.isfinite(samples).all()):
        raise UnnoiseError(f"latent inpainting produced non-finite values (method {method}, {steps} steps)")
    return samples, method, steps
