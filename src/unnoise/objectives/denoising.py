"""The Gaussian denoising objective: x_t ~ q(x_t | x0) at drawn times t, the network's output matched to
its target (losses.denoising_loss: weightings, learned variances and the hybrid VLB term of Nichol &
Dhariwal 2021), t uniform, log-normal (Karras et al. 2022) or importance-sampled by loss history
(train/timesteps.py), conditions dropped with probability cond_dropout (Ho & Salimans 2022). The same
objective trains every process, the flow-matching one included (prediction "velocity")."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..conditions import Conditions
from ..device import cpu
from ..grids import sample_training_t
from ..losses import denoising_loss
from ..param import Denoiser
from ..train.timesteps import LossAwareTimesteps
from .base import trainable


class DenoisingObjective:
    """Denoising score matching for `denoiser` (its `net` is the trained model) with `conditions`;
    `train` is the run's TrainConfig, `levels` the data's quantization levels (0: continuous)."""

    def __init__(self, denoiser: Denoiser, conditions: Conditions, train, levels: int = 0):
        self.denoiser, self.conditions, self.tc, self.levels = denoiser, conditions, train, levels
        self.model = denoiser.net
        self.timesteps = (LossAwareTimesteps(denoiser.process.steps) if train.density == "importance" else None)
        self.use_module(self.model)

    def denoiser_for(self, module: nn.Module) -> Denoiser:
        """The denoiser computing through `module` (e.g. the EMA copy) with this run's parameterization."""
        d = self.denoiser
        return Denoiser(module, d.process, d.prediction, d.sigma_data, d.learned_variance)

    def use_module(self, module: nn.Module) -> None:
        self.train_denoiser = self.denoiser_for(module)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable(self.model)

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """t (and its importance weight), the noise, and the conditions after dropout, in this order."""
        x0 = batch["x"]
        if self.timesteps is not None:
            t, weight = self.timesteps.sample(len(x0), generator)
        else:
            tc = self.tc
            t, weight = sample_training_t(self.denoiser.process, len(x0), generator, tc.density, tc.p_mean,
                                          tc.p_std), None
        noise = torch.randn(x0.shape, generator=generator)
        cond = self.conditions.dropout(self.conditions.from_batch(batch), self.tc.cond_dropout, generator)
        rows = {"x0": x0, "t": t, "noise": noise, "cond": cond}
        return rows if weight is None else {**rows, "weight": weight}

    def loss_of(self, rows: dict) -> Tensor:
        tc = self.tc
        return denoising_loss(self.train_denoiser, rows["x0"], rows["t"].to(cpu()), rows["noise"],
                              cond=rows["cond"], weighting=tc.weighting, gamma=tc.min_snr_gamma,
                              vlb_weight=tc.vlb_weight, levels=self.levels or None)

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        return self.loss_of(self.draw(batch, generator))

    @property
    def observes_losses(self) -> bool:
        """Only the importance sampler of t learns from the losses."""
        return self.timesteps is not None

    def observe(self, rows: dict, losses: Tensor) -> None:
        if self.timesteps is not None:
            self.timesteps.update(rows["t"], losses)

    def state(self) -> dict[str, Tensor]:
        return self.timesteps.state() if self.timesteps is not None else {}

    def load_state(self, state: dict[str, Tensor]) -> None:
        if self.timesteps is not None:
            self.timesteps.load(state)

    def describe(self, rows: dict) -> str:
        x0, t = rows["x0"], rows["t"]
        return f"batch mean {x0.mean():.4g}, std {x0.std():.4g}, t in [{t.min():.4g}, {t.max():.4g}]"
