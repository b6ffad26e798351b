"""The categorical-diffusion objective: the continuous-time ELBO of an absorbing (MDLM / MD4) or uniform
(D3PM in continuous time) process, per token, for a model returning x_0 logits (discrete/loss.py).

Every random choice of a step (the times, stratified over the global batch, and the corruption uniforms)
is drawn in `draw`, so any split into ranks and micro-batches computes what one process would.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..discrete.loss import elbo_terms, sample_times
from ..discrete.process import CategoricalProcess
from .base import SingleModelObjective


class MaskedDiffusionObjective(SingleModelObjective):
    """Loss = ELBO(x_0) / L in nats per token; `model(x_t, t) -> logits (B, L, K)`."""

    def __init__(self, model: nn.Module, process: CategoricalProcess, time_sampling: str = "stratified"):
        self.model, self.process, self.time_sampling = model, process, time_sampling
        self.use_module(model)

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        x0 = batch["x"]
        t = sample_times(len(x0), generator, self.time_sampling)
        uniforms = torch.rand((len(x0), 2, *x0.shape[1:]), generator=generator, dtype=torch.float64)
        return {"x0": x0, "t": t, "uniforms": uniforms}

    def loss_of(self, rows: dict) -> Tensor:
        x0, t = rows["x0"], rows["t"]
        x_t = self.process.corrupt(x0, t, rows["uniforms"].transpose(0, 1))
        logits = self.train_module(x_t, t)
        return elbo_terms(self.process, logits, x0, x_t, t) / x0.shape[-1]

    def describe(self, rows: dict) -> str:
        t = rows["t"]
        return (f"{self.process.kind} process, {rows['x0'].shape[0]} sequences, t in [{float(t.min()):.4g}, "
                f"{float(t.max()):.4g}]")


def bits_per_token(nats_per_token: float) -> float:
    return nats_per_token / math.log(2.0)
