"""Training a run: read or take its config, build the parts (data, conditions, denoiser, objective) and
hand them to the generic trainer (train/loop.py), under the run directory's writer lock.

    train_run(config, run_dir, resume=False, steps=None, preview=None, device=None) -> summary dict

`preview(denoiser, step)` is called on rank 0 every train.sample_every steps with the EMA denoiser;
the default writes a sample grid to run_dir/samples/step_N.png (a text run: its texts to step_N.txt,
run/text.py); pass `preview=False` for none. A text run (token data, model.process absorbing, uniform or
autoregressive) trains its transformer with discrete/text.py's objective instead of a Gaussian denoiser.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from ..conditions import conditions_for
from ..data import load_dataset
from ..discrete.text import text_objective
from ..device import cpu, is_cuda, resolve_device
from ..errors import UnnoiseError
from ..objectives import DenoisingObjective
from ..objectives.control import ControlObjective
from ..train.distributed import Distributed
from ..train.loop import Batches, Trainer
from .control import control_config, init_control, is_control_config
from .build import build_denoiser, check_init_from, resolve_config
from .distill import distill_objective, resolve_distill_config
from .load import read_run_config
from .latent import autoencoder_objective, autoencoder_preview, encode_dataset, finish_run, is_autoencoder_config
from .molecules import is_molecule_config, molecule_objective, resolve_molecule_config
from .text import is_text_config, text_preview
from .checkpoint import read_checkpoint_tensors
from .config import RunConfig, config_to_dict

log = logging.getLogger("unnoise.train")


def build_trainer(config: RunConfig | None, run_dir: Path, resume: bool = False, steps: int | None = None,
                  preview=None, device: str | torch.device | None = None) -> Trainer:
    """The Trainer of a run (restored from its last checkpoint with `resume`; config then read from
    run_dir, `steps` may extend it); `device` overrides train.device."""
    run_dir = Path(run_dir)
    if resume and config is None:  # with a config: the saved one with --resume's allowed overrides
        config = read_run_config(run_dir)
    if steps is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
    tc = config.train
    from .threads import apply_threads

    threads = apply_threads(tc.threads)
    log.info("threads: %d (train.threads=%d; 0: auto, the free cores)", threads, tc.threads)
    torch.manual_seed(tc.seed)
    dataset = load_dataset(config.data.name, **config.data.options)
    tokenizer = getattr(dataset, "tokenizer", None)
    if is_control_config(config):  # ControlNet: the base run's network and conditions, its hash (run/control.py)
        config = control_config(config)
    config = resolve_config(config, dataset.shape, dataset.num_classes, getattr(dataset, "levels", 0),
                            dataset.class_names if dataset.labels is not None else (),
                            getattr(dataset, "sample_rate", 0), dataset.spec.modality, dataset.spec.dtype,
                            dataset.spec.vocab_size, tokenizer.to_dict() if tokenizer is not None else None)
    if is_molecule_config(config):  # atom types and p(N) recorded, the EGNN sized (run/molecules.py)
        config = resolve_molecule_config(config, dataset)
    config = resolve_distill_config(config)  # a few-step student: its recipe and step schedule (run/distill.py)
    dist = Distributed.from_env(resolve_device(device if device is not None else tc.device))
    pixels = dataset.x
    dataset = encode_dataset(config, dataset, dist.device)  # a latent run trains on its codec's latents
    if is_control_config(config):  # controls come from the images, not the latents (conditions/control.py)
        dataset.pixels = pixels
    denoiser = build_denoiser(config)  # a TextModel for a text run (run/text.py), an AutoencoderModel (run/latent.py)
    if is_control_config(config):  # the frozen base run's weights, a ControlNet copied from them
        init_control(denoiser.net, config)
    else:
        init_from(denoiser.net, config.model.init_from)
    if is_autoencoder_config(config):
        objective = autoencoder_objective(config, denoiser.net)
        preview = autoencoder_preview(config, run_dir, dataset) if preview is None else preview
    elif is_text_config(config):  # token data: no Gaussian denoiser, no conditions
        objective = text_objective(denoiser.net, denoiser.process)
        preview = text_preview(config, run_dir, denoiser) if preview is None else preview
    else:
        conditions = conditions_for(config, dataset)
        objective = gaussian_objective(config, denoiser, conditions)
        preview = sample_grid_preview(config, run_dir, conditions, dataset) if preview is None else preview
    if dist.main:
        log.info("data: %s; device: %s", dataset.describe(), dist.device)
    trainer = Trainer(objective, Batches(dataset, tc.batch_size, tc.seed), tc, run_dir,
                      config=config_to_dict(config), device=dist.device, dist=dist, preview=preview or None)
    if resume:
        trainer.restore()
    if dist.main:
        record_session(run_dir, threads=threads, device=str(dist.device), resume=resume, step=trainer.step)
    return trainer


def gaussian_objective(config: RunConfig, denoiser, conditions):
    """The objective of a run on a Gaussian process: a few-step student's (run/distill.py), a molecule run's
    (zero-centre-of-mass noise), a ControlNet's (the control branch only), else plain denoising."""
    if config.model.distill:
        return distill_objective(config, denoiser, conditions)
    if is_molecule_config(config):
        return molecule_objective(config, denoiser, conditions, config.train)
    levels = 0 if config.model.codec else config.data_levels  # latents are continuous
    kind = ControlObjective if is_control_config(config) else DenoisingObjective
    return kind(denoiser, conditions, config.train, levels)


def record_session(run_dir: Path, **facts) -> None:
    """Append one line per training invocation to RUN/sessions.jsonl: when, threads chosen, device."""
    facts = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **facts}
    with open(Path(run_dir) / "sessions.jsonl", "a") as f:
        f.write(json.dumps(facts) + "\n")


def train_run(config: RunConfig | None, run_dir: Path, resume: bool = False, steps: int | None = None,
              preview=None, device: str | torch.device | None = None) -> dict:
    """Train a run to completion (see build_trainer); rank 0 holds the run directory's writer lock."""
    from .lock import run_lock

    main = int(os.environ.get("RANK", "0")) == 0
    lock = run_lock(run_dir, purpose="train") if main else _no_lock()
    with lock:
        trainer = build_trainer(config, run_dir, resume, steps, preview, device)
        try:
            return finish_run(trainer, run_dir, trainer.run())  # autoencoder: codec/
        finally:
            trainer.dist.close()


class _no_lock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def init_from(model: nn.Module, init: dict) -> list[str]:
    """Copy another run's EMA weights into every parameter and buffer of `model` whose name and shape
    match; with mode frozen those parameters stop requiring gradients. Returns the copied names."""
    if not init:
        return []
    check_init_from(init)
    source = read_checkpoint_tensors(Path(init["run"]), "ema.safetensors")
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise UnnoiseError(f"model.init_from: no weights of {init['run']} match this network's names and shapes")
    model.load_state_dict(matched, strict=False)
    if init.get("mode", "copy") == "frozen":
        for name, parameter in model.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)
    log.info("init_from %s (%s): %d of %d tensors copied", init["run"], init.get("mode", "copy"), len(matched),
             len(own))
    return sorted(matched)


def sample_grid_preview(config: RunConfig, run_dir: Path, conditions, dataset):
    """The default preview: a grid of config.sample.n samples (conditions: classes in turn, the first
    captions, the first images' low-res versions) written to run_dir/samples/step_N.png."""
    def preview(denoiser, step: int) -> None:
        from ..io import preview_suffix, write_samples
        from ..pipeline import sample_run

        if any(is_cuda(p.device) for p in denoiser.parameters()):  # the sampler runs on the host for now
            denoiser = copy.deepcopy(denoiser).to(cpu())
        n = config.sample.n
        cond = conditions.preview(n, x=dataset.x[torch.arange(n) % len(dataset.x)])
        x = sample_run(denoiser, config, n=n, seed=0, cond=cond)
        write_samples(x, config.spec, Path(run_dir) / "samples" / f"step_{step:07d}{preview_suffix(config.spec)}")

    return preview
