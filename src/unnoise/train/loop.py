"""The generic training loop over an objective: device, precision, gradient accumulation, AdamW on the
objective's trainable parameters, EMA, DDP, warm-up, progress, previews, atomic checkpoints, exact resume.

The loop knows nothing of noise, conditions or networks: it is handed built parts (an objective, a
batch source, the config to save) by `unnoise.run.training`, which reads a run's config and builds them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..conditions.base import slice_condition as slice_rows
from ..device import autocast, check_precision, device_rng_state, set_device_rng_state, to_device
from ..errors import UnnoiseError
from ..run.checkpoint import load_training_state, load_weights, resume_checkpoint, save_checkpoint, write_json
from .distributed import Distributed
from .ema import EMA
from ..run.progress import Progress

log = logging.getLogger("unnoise.train")
Preview = Callable[[nn.Module, int], None]  # (EMA denoiser, step) -> None: e.g. write a sample grid


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
    """Endless shuffled mini-batches {"x", "index", "label"} from an in-memory dataset (host memory);
    its generator state is the data position."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.x, self.labels = dataset.x, dataset.labels
        self.batch_size = min(batch_size, len(self.x))
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.empty(0, dtype=torch.long), 0

    def next(self) -> dict:
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.x), generator=self.generator), 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        labels = None if self.labels is None else self.labels[index]
        return {"x": self.x[index], "index": index, "label": labels}


class Trainer:
    """One run's training state; `run()` trains to train_config.steps, checkpointing along the way.
    `objective` (see objectives/base.py) owns the model; `config` is the dict saved with checkpoints."""

    def __init__(self, objective, batches: Batches, train_config, run_dir: Path, *, config: dict,
                 device: torch.device, dist: Distributed | None = None, preview: Preview | None = None):
        self.objective, self.batches, self.tc, self.config = objective, batches, train_config, config
        self.run_dir, self.preview = Path(run_dir), preview
        self.dist = dist or Distributed()
        self.device = device
        check_precision(self.tc.precision, device, "train.precision")
        self.dist.check_batch(self.tc.batch_size, self.tc.grad_accum)
        self.model = objective.model.to(device)
        if self.tc.channels_last:
            self.model.to(memory_format=torch.channels_last)
        module = torch.compile(self.model) if self.tc.compile else self.model
        self.train_module = self.dist.wrap(module)  # DDP averages gradients over ranks
        objective.use_module(self.train_module)
        self.parameters = list(objective.trainable_parameters())
        if not self.parameters:
            raise UnnoiseError("nothing to train: every parameter is frozen (model.init_from mode=frozen "
                               "copied them all)")
        self.optimizer = torch.optim.AdamW(self.parameters, lr=self.tc.lr, weight_decay=self.tc.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type) if self.tc.precision == "fp16" else None
        self.ema = EMA(self.model, self.tc.ema_decay)
        self.noise_gen = torch.Generator().manual_seed(self.tc.seed + 1)  # every draw of the objective
        self.step, self.images_seen, self.last_checkpoint = 0, 0, None
        self.running_loss = self.best_loss = None  # smoothed training loss; the best one picks best/
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", config)
        self.dist.barrier()

    # --------------------------------------------------------------------------------- checkpoints

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "noise": self.noise_gen.get_state(),
                 "data": self.batches.generator.get_state(), "order": self.batches.order.clone()}
        on_device = device_rng_state(self.device)
        if on_device is not None:
            state["device"] = on_device
        return {**state, **self.objective.state()}

    def save(self) -> Path:
        """Rank 0 writes the checkpoint (every rank holds the same state); the others wait for it."""
        state = {"step": self.step, "images_seen": self.images_seen, "data_position": self.batches.position,
                 "loss": self.running_loss, "best_loss": self.best_loss}
        if self.scaler is not None:  # fp16: the loss scale and its growth counter, for an exact resume
            state["grad_scaler"] = self.scaler.state_dict()
        is_best = self.running_loss is not None and (self.best_loss is None or self.running_loss < self.best_loss)
        if is_best:
            self.best_loss = state["best_loss"] = self.running_loss
        path = self.run_dir / "checkpoint"
        if self.dist.main:
            path = save_checkpoint(self.run_dir, model=self.model, ema=self.ema, optimizer=self.optimizer,
                                   rng=self._rng_state(), state=state, config=self.config,
                                   keep=self.tc.keep_checkpoints, best=is_best)
        self.dist.barrier()
        self.last_checkpoint = f"{path} (step {self.step})"
        return path

    def restore(self) -> None:
        """Continue from the run's newest intact checkpoint: weights, optimizer, generators, position."""
        ckpt = resume_checkpoint(self.run_dir)
        self.model.load_state_dict(load_weights(ckpt / "model.safetensors"))
        self.ema.model.load_state_dict(load_weights(ckpt / "ema.safetensors"))
        state, rng = load_training_state(ckpt, self.optimizer)
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.running_loss, self.best_loss = state.get("loss"), state.get("best_loss")
        self.ema.updates = state["ema_updates"]
        torch.set_rng_state(rng["torch"])
        set_device_rng_state(self.device, rng.get("device"))
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.noise_gen.set_state(rng["noise"])
        self.batches.generator.set_state(rng["data"])
        self.batches.order, self.batches.position = rng["order"], state["data_position"]
        self.objective.load_state(rng)
        self.last_checkpoint = f"{ckpt} (step {self.step})"
        log.info("resumed from %s", self.last_checkpoint)

    # --------------------------------------------------------------------------------- training

    def draw(self) -> dict:
        """The next global batch's rows (every draw made on the host, identically on every rank)."""
        return self.objective.draw(self.batches.next(), self.noise_gen)

    def local_rows(self, rows: dict) -> dict:
        """This rank's slice of the global rows, on the training device."""
        return to_device(slice_rows(rows, self.dist.rows(_rows_length(rows))), self.device)

    def train_step(self) -> float:
        """One optimizer step on the global batch: each rank trains on its slice, in `grad_accum`
        micro-batches whose gradients add up to the full slice's."""
        tc, dist = self.tc, self.dist
        rows = self.draw()
        local = self.local_rows(rows)
        self.optimizer.zero_grad(set_to_none=True)
        weighted, per_sample = self._accumulate(local)
        if getattr(self.objective, "observes_losses", True):  # a gather over ranks only when it is used
            self.objective.observe(rows, dist.gather(per_sample))
        loss = dist.mean(weighted.mean())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        # the norm before clipping (max_norm inf: measure only); DDP gave every rank the same gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, tc.grad_clip if tc.grad_clip > 0 else math.inf)
        self._check_finite(loss, grad_norm, rows)
        for group in self.optimizer.param_groups:
            group["lr"] = tc.lr * lr_factor(self.step, tc)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        self.images_seen += _rows_length(rows)
        return loss.item()

    def _check_finite(self, loss, grad_norm, rows) -> None:
        checks = (("loss", loss),) if self.scaler is not None else (("loss", loss), ("gradient norm", grad_norm))
        for what, value in checks:  # (with fp16 the scaler skips steps with overflowing gradients)
            if not torch.isfinite(value):
                raise UnnoiseError(
                    f"{what} is {value.item()} at step {self.step + 1} ({self.objective.describe(rows)}); "
                    f"stopped before updating; last good checkpoint: {self.last_checkpoint or 'none'}")

    def _accumulate(self, rows: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward through the slice in micro-batches (gradient of its weighted mean loss); returns the
        weighted and the unweighted per-sample losses. DDP synchronises on the last micro-batch only."""
        tc, local = self.tc, _rows_length(rows)
        micro = local // tc.grad_accum
        weighted_losses, losses = [], []
        for k in range(tc.grad_accum):
            part = slice_rows(rows, slice(k * micro, (k + 1) * micro))
            last = k == tc.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.train_module.no_sync()
            with sync, autocast(self.device, tc.precision):
                per_sample = self.objective.loss_of(part).float()
                weight = part.get("weight")
                weighted = per_sample if weight is None else per_sample * weight.to(per_sample.dtype)
                total = weighted.sum() / local
                (total if self.scaler is None else self.scaler.scale(total)).backward()
            weighted_losses.append(weighted.detach())
            losses.append(per_sample.detach())
        return torch.cat(weighted_losses), torch.cat(losses)

    def ema_denoiser(self):
        """The EMA model as the objective's denoiser (what previews and evaluations sample)."""
        return self.objective.denoiser_for(self.ema.model)

    def run(self) -> dict:
        """Train to train_config.steps. Checkpoints every min(checkpoint_every, ceil(steps / 4)) steps (a run
        killed half way always has one) and, in a single process, every checkpoint_minutes of wall clock;
        Ctrl-C (single process) finishes the current step, writes a checkpoint and names the resume command."""
        tc, main = self.tc, self.dist.main  # rank 0 reports, logs and previews
        progress = Progress(tc.steps, "train", start=self.step) if main else None
        metrics = open(self.run_dir / "metrics.jsonl", "a") if main else None
        board = _tensorboard(self.run_dir) if main and tc.tensorboard else None
        t0, start = time.perf_counter(), self.step
        every = min(tc.checkpoint_every, max(1, math.ceil(tc.steps / 4))) if tc.checkpoint_every else 0
        minutes = getattr(tc, "checkpoint_minutes", 0) if self.dist.world == 1 else 0
        last_save, interrupt = time.monotonic(), _DeferredInterrupt(self.dist.world == 1)
        try:
            while self.step < tc.steps:
                if interrupt.requested:
                    self._stop_interrupted()
                loss = self.train_step()
                self.running_loss = loss if self.running_loss is None else 0.98 * self.running_loss + 0.02 * loss
                if main:
                    progress.update(self.step, loss=self.running_loss)
                if main and (self.step % tc.log_every == 0 or self.step == tc.steps):
                    _log_metrics(metrics, board, self.step, loss, self.images_seen, time.perf_counter() - t0)
                timely = minutes and time.monotonic() - last_save >= 60 * minutes
                if (every and self.step % every == 0 or timely) and self.step < tc.steps:
                    self.save()
                    last_save = time.monotonic()
                if main and self.preview and tc.sample_every and self.step % tc.sample_every == 0 \
                        and self.step < tc.steps:
                    self.preview(self.ema_denoiser(), self.step)
        finally:
            interrupt.restore()
            for sink in (metrics, board):
                if sink is not None:
                    sink.close()
        self.save()
        if main:
            self._write_loss_curve()
        return {"steps": self.step, "trained_steps": self.step - start, "images_seen": self.images_seen,
                "seconds": time.perf_counter() - t0, "final_loss": self.running_loss}

    def _stop_interrupted(self) -> None:
        """After Ctrl-C: checkpoint the finished step, say where to resume, and stop (KeyboardInterrupt)."""
        path = self.save()
        log.warning("interrupted at step %d; checkpoint written to %s; continue with: unnoise train --resume "
                    "--out %s", self.step, path, self.run_dir)
        raise KeyboardInterrupt

    def _write_loss_curve(self) -> None:
        """loss_curve.png from metrics.jsonl (the whole run, resumed parts included)."""
        from ..io.plots import save_loss_curve

        rows = [json.loads(line) for line in (self.run_dir / "metrics.jsonl").read_text().splitlines() if line]
        if len(rows) >= 2:
            save_loss_curve([r["step"] for r in rows], [r["loss"] for r in rows], self.run_dir / "loss_curve.png")


class _DeferredInterrupt:
    """While training in the main thread of a single process, the first Ctrl-C only sets `requested` (the
    loop stops after the current step, consistent and checkpointed); a second one interrupts at once."""

    def __init__(self, active: bool):
        import signal
        import threading

        self.requested, self.previous = False, None
        if active and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)

    def restore(self) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _rows_length(rows: dict) -> int:
    return len(next(v for v in rows.values() if isinstance(v, torch.Tensor)))


def _log_metrics(metrics, board, step: int, loss: float, images_seen: int, seconds: float) -> None:
    metrics.write(json.dumps({"step": step, "loss": loss, "images_seen": images_seen, "seconds": seconds}) + "\n")
    metrics.flush()
    if board is not None:
        board.add_scalar("loss", loss, step)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UnnoiseError("train.tensorboard=true needs the tensorboard package "
                           "(pip install 'unnoise[tensorboard]')") from None
    return SummaryWriter(str(run_dir / "tensorboard"))
