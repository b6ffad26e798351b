"""Class labels: the part is a LongTensor (B,) of labels 0..K-1, with K (one past the last class) the
null label the network's class table reserves for "no class" (classifier-free guidance)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError
from .base import drop_mask


class LabelCondition:
    name, key, request_key, droppable = "label", "label", "label", True

    def __init__(self, num_classes: int, class_names: Sequence[str] = ()):
        if num_classes < 1:
            raise UnnoiseError("model.conditions: label needs a dataset with labels (this one has none)")
        self.num_classes, self.class_names = int(num_classes), tuple(class_names)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def network_options(self) -> dict:
        return {"num_classes": self.num_classes}

    def from_batch(self, batch: dict) -> Tensor:
        labels = batch.get("label")
        if labels is None:
            raise UnnoiseError("model.conditions: label needs a dataset with labels (this one has none)")
        return labels.long()

    def null(self, n: int, device=None) -> Tensor:
        return torch.full((n,), self.null_label, dtype=torch.long, device=device)

    def dropout(self, part: Tensor, p: float, generator: torch.Generator) -> Tensor:
        if p <= 0:
            return part
        drop = drop_mask(len(part), p, generator)
        return torch.where(drop.to(part.device), torch.full_like(part, self.null_label), part)

    def preview(self, n: int, device=None) -> Tensor:
        """Labels for a sample grid of n: the classes in turn."""
        return torch.arange(n, device=device) % self.num_classes

    def from_request(self, value, n: int, device=None) -> Tensor:
        """Labels from a class index, a class name (e.g. "C4") or a sequence of n of them."""
        values = list(value) if isinstance(value, (list, tuple, Tensor)) else [value] * n
        if len(values) != n:
            raise UnnoiseError(f"label: {len(values)} labels given for {n} samples")
        return torch.tensor([self.label_of(v) for v in values], dtype=torch.long, device=device)

    def label_of(self, value) -> int:
        """The label of one class index or name, with a one-line error listing the valid classes."""
        if isinstance(value, Tensor):
            value = value.item()
        if isinstance(value, str) and value in self.class_names:
            return self.class_names.index(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.num_classes:
            return value
        names = ", ".join(self.class_names) if self.class_names else f"0..{self.num_classes - 1}"
        raise UnnoiseError(f"class {value!r} is not one of this run's classes: {names}")
