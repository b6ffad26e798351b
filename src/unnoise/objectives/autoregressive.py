"""The autoregressive objective: exact negative log-likelihood per token of a causal model over [BOS] + x."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..discrete.autoregressive import autoregressive_nll
from .base import trainable


class AutoregressiveObjective:
    """Loss = -log p(x) / L in nats per token; `model` is a causal transformer (nn/transformer.py)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.use_module(model)

    def use_module(self, module: nn.Module) -> None:
        self.train_module = module

    def denoiser_for(self, module: nn.Module) -> nn.Module:
        """What samplers call: the causal model itself (discrete/autoregressive.py)."""
        return module

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable(self.model)

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        return {"x0": batch["x"]}  # nothing random: the loss is exact

    def loss_of(self, rows: dict) -> Tensor:
        x0 = rows["x0"]
        return autoregressive_nll(self.train_module, x0, self.model.config.vocab_size) / x0.shape[-1]

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        return self.loss_of(self.draw(batch, generator))

    def observe(self, rows: dict, losses: Tensor) -> None:
        pass

    def state(self) -> dict[str, Tensor]:
        return {}

    def load_state(self, state: dict[str, Tensor]) -> None:
        pass

    def describe(self, rows: dict) -> str:
        return f"autoregressive, {rows['x0'].shape[0]} sequences of {rows['x0'].shape[-1]} tokens"
