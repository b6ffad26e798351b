"""The training loop: AdamW, EMA, warm-up, progress, sample grids, atomic checkpoints, exact resume."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import torch

from ..conditions import conditions_for, slice_condition
from ..data import load_dataset
from ..device import autocast, cpu
from ..errors import UnnoiseError
from ..grids import sample_training_t
from ..losses import denoising_loss
from ..param import Denoiser
from ..run.build import build_denoiser, read_run_config, resolve_config
from ..run.checkpoint import load_training_state, resume_checkpoint, load_weights, save_checkpoint, write_json
from ..run.config import RunConfig, config_to_dict
from .ema import EMA
from .progress import Progress
from .distributed import Distributed
from .timesteps import LossAwareTimesteps

log = logging.getLogger("unnoise.train")


def lr_factor(step: int, cfg) -> float:
    """Linear warm-up, then constant or cosine decay to 0."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if cfg.lr_schedule != "constant":
        raise UnnoiseError(f"train.lr_schedule: unknown {cfg.lr_schedule!r}; valid: constant, cosine")
    return 1.0


class Batches:
    """Endless shuffled mini-batches from in-memory tensors; its generator state is the data position."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.x, self.labels = dataset.x, dataset.labels
        self.batch_size = min(batch_size, len(self.x))
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.empty(0, dtype=torch.long), 0

    def next(self):
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.x), generator=self.generator), 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        labels = None if self.labels is None else self.labels[index]
        return {"x": self.x[index], "index": index, "label": labels}


class Trainer:
    """Holds one run's state; `run()` trains to config.train.steps, checkpointing along the way."""

    def __init__(self, config: RunConfig | None, run_dir: Path, resume: bool = False, steps: int | None = None):
        self.run_dir = Path(run_dir)
        if resume:
            config = read_run_config(self.run_dir)
        if steps is not None:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))
        self.tc = config.train
        if self.tc.threads:
            torch.set_num_threads(self.tc.threads)
        torch.manual_seed(self.tc.seed)
        dataset = load_dataset(config.data.name, **config.data.options)
        self.config = resolve_config(config, dataset.shape, dataset.num_classes, getattr(dataset, "levels", 0),
                                     dataset.class_names if dataset.labels is not None else (),
                                     getattr(dataset, "sample_rate", 0), dataset.spec.modality, dataset.spec.dtype)
        self.denoiser = build_denoiser(self.config)
        self.model = self.denoiser.net
        self.dist = Distributed.from_env()
        self.dist.check_batch(self.tc.batch_size, self.tc.grad_accum)
        if self.tc.channels_last:
            self.model.to(memory_format=torch.channels_last)
        net = torch.compile(self.model) if self.tc.compile else self.model
        self.train_net = self.dist.wrap(net)  # DDP averages gradients over ranks
        d = self.denoiser
        self.train_denoiser = Denoiser(self.train_net, d.process, d.prediction, d.sigma_data, d.learned_variance)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.tc.lr, weight_decay=self.tc.weight_decay)
        self.ema = EMA(self.model, self.tc.ema_decay)
        self.conditions = conditions_for(self.config, dataset)
        self.batches = Batches(dataset, self.tc.batch_size, self.tc.seed)
        self.noise_gen = torch.Generator().manual_seed(self.tc.seed + 1)
        self.timesteps = (LossAwareTimesteps(self.denoiser.process.steps) if self.tc.density == "importance"
                          else None)
        self.device = cpu()
        self.step, self.images_seen, self.last_checkpoint = 0, 0, None
        self.running_loss = self.best_loss = None  # smoothed training loss; the best one picks best/
        if self.dist.main:
            log.info("data: %s", dataset.describe())
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", config_to_dict(self.config))
        self.dist.barrier()
        if resume:
            self._restore()

    # --------------------------------------------------------------------------------- checkpoints

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "noise": self.noise_gen.get_state(),
                 "data": self.batches.generator.get_state(), "order": self.batches.order.clone()}
        return {**state, **(self.timesteps.state() if self.timesteps is not None else {})}

    def save(self) -> Path:
        """Rank 0 writes the checkpoint (every rank holds the same state); the others wait for it."""
        state = {"step": self.step, "images_seen": self.images_seen, "data_position": self.batches.position,
                 "loss": self.running_loss, "best_loss": self.best_loss}
        is_best = self.running_loss is not None and (self.best_loss is None or self.running_loss < self.best_loss)
        if is_best:
            self.best_loss = state["best_loss"] = self.running_loss
        path = self.run_dir / "checkpoint"
        if self.dist.main:
            path = save_checkpoint(self.run_dir, model=self.model, ema=self.ema, optimizer=self.optimizer,
                                   rng=self._rng_state(), state=state, config=config_to_dict(self.config),
                                   keep=self.tc.keep_checkpoints, best=is_best)
        self.dist.barrier()
        self.last_checkpoint = f"{path} (step {self.step})"
        return path

    def _restore(self) -> None:
        ckpt = resume_checkpoint(self.run_dir)
        self.model.load_state_dict(load_weights(ckpt / "model.safetensors"))
        self.ema.model.load_state_dict(load_weights(ckpt / "ema.safetensors"))
        state, rng = load_training_state(ckpt, self.optimizer)
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.running_loss, self.best_loss = state.get("loss"), state.get("best_loss")
        self.ema.updates = state["ema_updates"]
        torch.set_rng_state(rng["torch"])
        self.noise_gen.set_state(rng["noise"])
        self.batches.generator.set_state(rng["data"])
        self.batches.order, self.batches.position = rng["order"], state["data_position"]
        if self.timesteps is not None:
            self.timesteps.load(rng)
        self.last_checkpoint = f"{ckpt} (step {self.step})"
        log.info("resumed from %s", self.last_checkpoint)

    # --------------------------------------------------------------------------------- training

    def _draw_t(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        tc = self.tc
        if self.timesteps is not None:
            return self.timesteps.sample(n, self.noise_gen)
        return sample_training_t(self.denoiser.process, n, self.noise_gen, tc.density, tc.p_mean, tc.p_std), None

    def train_step(self) -> float:
        """One optimizer step on the global batch: drawn identically on every rank, each rank trains on
        its slice, in `grad_accum` micro-batches whose gradients add up to the full slice's."""
        tc, dist = self.tc, self.dist
        batch = self.batches.next()
        x0 = batch["x"]
        t, weights = self._draw_t(len(x0))
        noise = torch.randn(x0.shape, generator=self.noise_gen)
        global_t = t
        # the same draws on every rank: conditions dropped before sharding
        cond = self.conditions.dropout(self.conditions.from_batch(batch), tc.cond_dropout, self.noise_gen)
        x0, t, noise = dist.shard(x0), dist.shard(t), dist.shard(noise)
        cond = slice_condition(cond, dist.rows(len(global_t)))
        weights = None if weights is None else dist.shard(weights)
        self.optimizer.zero_grad(set_to_none=True)
        weighted, per_sample = self._accumulate(x0, t, noise, cond, weights)
        if self.timesteps is not None:
            self.timesteps.update(global_t, dist.gather(per_sample))
        loss = dist.mean(weighted.mean())
        # the norm before clipping (max_norm inf: measure only); DDP gave every rank the same gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip if tc.grad_clip > 0
                                                   else math.inf)
        for what, value in (("loss", loss), ("gradient norm", grad_norm)):
            if not torch.isfinite(value):
                raise UnnoiseError(
                    f"{what} is {value.item()} at step {self.step + 1} (batch mean {x0.mean():.4g}, std "
                    f"{x0.std():.4g}, t in [{t.min():.0f}, {t.max():.0f}]); stopped before updating; last good "
                    f"checkpoint: {self.last_checkpoint or 'none'}")
        for group in self.optimizer.param_groups:
            group["lr"] = tc.lr * lr_factor(self.step, tc)
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        self.images_seen += len(x0) * dist.world
        return loss.item()

    def _accumulate(self, x0, t, noise, cond, weights) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward through the slice in micro-batches (gradient of its weighted mean loss); returns the
        weighted and the unweighted per-sample losses (the latter feed the importance sampler's history).
        DDP synchronises gradients on the last micro-batch only."""
        tc, local = self.tc, len(x0)
        micro = local // tc.grad_accum
        weighted_losses, losses = [], []
        for k in range(tc.grad_accum):
            part = slice(k * micro, (k + 1) * micro)
            last = k == tc.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.train_net.no_sync()
            cast = autocast(self.device, tc.precision)
            with sync, cast:
                per_sample = denoising_loss(
                    self.train_denoiser, x0[part], t[part], noise[part], cond=slice_condition(cond, part),
                    weighting=tc.weighting, gamma=tc.min_snr_gamma, vlb_weight=tc.vlb_weight,
                    levels=self.config.data_levels or None).float()
                weighted = per_sample if weights is None else per_sample * weights[part].to(per_sample.dtype)
                (weighted.sum() / local).backward()
            weighted_losses.append(weighted.detach())
            losses.append(per_sample.detach())
        return torch.cat(weighted_losses), torch.cat(losses)

    def sample_grid(self) -> Path:
        from ..io import write_samples
        from ..pipeline import sample_run

        n = self.config.sample.n
        x = sample_run(self.ema_denoiser(), self.config, n=n, seed=0, cond=self._preview_condition(n))
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        write_samples(x, self.config.spec, path)
        return path

    def _preview_condition(self, n: int):
        """Conditions of the sample grids: classes 0..K-1 in turn, the first n images' captions, their
        low-resolution versions."""
        return self.conditions.preview(n, x=self.batches.x[torch.arange(n) % len(self.batches.x)])

    def ema_denoiser(self) -> Denoiser:
        d = self.denoiser
        return Denoiser(self.ema.model, d.process, d.prediction, d.sigma_data, d.learned_variance)

    def run(self) -> dict:
        tc, main = self.tc, self.dist.main  # rank 0 reports, logs and draws sample grids
        progress = Progress(tc.steps, "train", start=self.step) if main else None
        metrics = open(self.run_dir / "metrics.jsonl", "a") if main else None
        board = _tensorboard(self.run_dir) if main and tc.tensorboard else None
        t0 = time.perf_counter()
        try:
            while self.step < tc.steps:
                loss = self.train_step()
                running = loss if self.running_loss is None else 0.98 * self.running_loss + 0.02 * loss
                self.running_loss = running
                if main:
                    progress.update(self.step, loss=running)
                if main and (self.step % tc.log_every == 0 or self.step == tc.steps):
                    metrics.write(json.dumps({"step": self.step, "loss": loss, "images_seen": self.images_seen,
                                              "seconds": time.perf_counter() - t0}) + "\n")
                    metrics.flush()
                    if board is not None:
                        board.add_scalar("loss", loss, self.step)
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0 and self.step < tc.steps:
                    self.save()
                if main and tc.sample_every and self.step % tc.sample_every == 0 and self.step < tc.steps:
                    self.sample_grid()
        finally:
            if metrics is not None:
                metrics.close()
            if board is not None:
                board.close()
        self.save()
        if main:
            self._write_loss_curve()
        return {"steps": self.step, "images_seen": self.images_seen, "seconds": time.perf_counter() - t0,
                "final_loss": self.running_loss}


    def _write_loss_curve(self) -> None:
        """loss_curve.png from metrics.jsonl (the whole run, resumed parts included)."""
        from ..io.plots import save_loss_curve

        rows = [json.loads(line) for line in (self.run_dir / "metrics.jsonl").read_text().splitlines() if line]
        if len(rows) >= 2:
            save_loss_curve([r["step"] for r in rows], [r["loss"] for r in rows], self.run_dir / "loss_curve.png")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UnnoiseError("train.tensorboard=true needs the tensorboard package "
                           "(pip install 'unnoise[tensorboard]')") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(config: RunConfig | None, run_dir: Path, resume: bool = False, steps: int | None = None) -> dict:
    """Train a run to completion; with resume, continue run_dir from its last checkpoint (config read
    from run_dir; `steps` may extend it)."""
    trainer = Trainer(config, run_dir, resume, steps)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()
