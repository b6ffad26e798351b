"""The Objective seam: what a training step optimises, apart from how the loop runs it.

An objective owns the trained module and every random choice of a step. The trainer (train/loop.py)
calls, per optimizer step:
    rows = objective.draw(batch, generator)   # all draws for the GLOBAL batch, as per-sample rows
    ... slices rows per rank and micro-batch, moves them to the device ...
    losses = objective.loss_of(part)          # per-sample loss (B,) with the graph attached
    objective.observe(rows, all_losses)       # optional feedback (e.g. the importance sampler's history),
                                              # only when objective.observes_losses (default: true)
Drawing everything for the global batch before slicing makes any number of ranks and micro-batches
compute what one process would. Rows are tensors with the batch along dimension 0, nested dicts of
them (conditions) or None; an optional "weight" row (B,) multiplies the loss for the gradient only.
`loss(batch, generator)` is both steps at once.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class Objective(Protocol):
    model: nn.Module  # the module whose weights are trained, averaged (EMA) and saved
    observes_losses: bool  # observe() uses the losses: the trainer gathers them over ranks every step

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """Every random choice of one step for a batch {"x": (B, ...), "index": (B,), ...}, as rows."""

    def loss_of(self, rows: dict) -> Tensor:
        """Per-sample loss (B,) for rows already on the model's device."""

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """Per-sample loss (B,) of one batch: draw, then loss_of."""

    def observe(self, rows: dict, losses: Tensor) -> None:
        """Feedback after a step: the global batch's rows and their per-sample losses."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates (frozen ones left out)."""

    def use_module(self, module: nn.Module) -> None:
        """Compute losses through `module` (the model wrapped for compilation or DDP)."""

    def state(self) -> dict[str, Tensor]:
        """Tensors to checkpoint for an exact resume (besides the weights and generators)."""

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Restore what `state` returned."""

    def describe(self, rows: dict) -> str:
        """A short account of a batch's rows, for error messages."""


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of `model` that require gradients."""
    return [p for p in model.parameters() if p.requires_grad]


class SingleModelObjective:
    """Defaults for an objective that trains one module and samples through it directly: losses go
    through the (possibly wrapped) training module, nothing to observe or checkpoint besides weights."""

    model: nn.Module
    observes_losses = False  # observe() does nothing: no per-step gather of losses over ranks

    def use_module(self, module: nn.Module) -> None:
        self.train_module = module

    def denoiser_for(self, module: nn.Module) -> nn.Module:
        """What samplers call: the trained module itself."""
        return module

    def trainable_parameters(self) -> list[nn.Parameter]:
        return trainable(self.model)

    def loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        return self.loss_of(self.draw(batch, generator))

    def observe(self, rows: dict, losses: Tensor) -> None:
        pass

    def state(self) -> dict[str, Tensor]:
        return {}

    def load_state(self, state: dict[str, Tensor]) -> None:
        pass
