"""The autoregressive objective: exact negative log-likelihood per token of a causal model over [BOS] + x."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..discrete.autoregressive import autoregressive_nll
from .base import SingleModelObjective


class AutoregressiveObjective(SingleModelObjective):
    """Loss = -log p(x) / L in nats per token; `model` is a causal transformer (nn/transformer.py)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.use_module(model)

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        return {"x0": batch["x"]}  # nothing random: the loss is exact

    def loss_of(self, rows: dict) -> Tensor:
        x0 = rows["x0"]
        return autoregressive_nll(self.train_module, x0, self.model.config.vocab_size) / x0.shape[-1]

    def describe(self, rows: dict) -> str:
        return f"autoregressive, {rows['x0'].shape[0]} sequences of {rows['x0'].shape[-1]} tokens"
