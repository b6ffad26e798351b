"""Molecule properties (QM9's alpha, gap, homo, lumo, mu, Cv) as a condition, for property-conditional
generation with classifier-free guidance (Hoogeboom et al. 2022, Sec. 4.2, with guidance instead of their
plain conditioning).

The part is a tensor (B, P + 1): the P requested properties normalised as (value - mean) / MAD (the mean
and the mean absolute deviation of the training split, EDM's normalisation), then a presence flag 1. The
null part (no property: unconditional) is all zeros. The network (nn/egnn.py, option `properties`)
appends the part to every atom's invariant features, so equivariance is kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import UnnoiseError
from .base import drop_mask


def property_statistics(values: dict, names: Sequence[str]) -> dict:
    """{"names", "mean", "mad"} of the training values {name: (M,)} of the conditioning properties."""
    means = [float(values[name].double().mean()) for name in names]
    mads = [float((values[name].double() - mean).abs().mean()) for name, mean in zip(names, means)]
    return {"names": list(names), "mean": means, "mad": [mad if mad > 0 else 1.0 for mad in mads]}


class PropertyCondition:
    name, key, request_key, droppable = "property", "property", "property", True

    def __init__(self, statistics: dict, dataset=None):
        """`statistics`: {"names", "mean", "mad"} as recorded in config.molecule["properties"]; empty while a
        config is being resolved (run/molecules.py records them), when only network_options is asked."""
        statistics = statistics or {}
        self.names = tuple(statistics.get("names", ()))
        self.mean = torch.tensor(statistics.get("mean", []), dtype=torch.float32)
        self.mad = torch.tensor(statistics.get("mad", []), dtype=torch.float32)
        self.dataset = dataset

    def _require(self) -> int:
        """P, the number of conditioning properties; a one-line error when none are recorded."""
        if not self.names:
            raise UnnoiseError("model.conditions: property needs molecule data with data.options.properties "
                               "(e.g. alpha or alpha,gap)")
        return len(self.names)

    def network_options(self) -> dict:
        return {}  # the network's `properties` is fixed with the molecule fields (run/molecules.py)

    def encode(self, values: Tensor) -> Tensor:
        """Values (B, P) in the dataset's units -> the part (B, P + 1): normalised values, presence 1."""
        self._require()
        normalised = (values.float() - self.mean.to(values.device)) / self.mad.to(values.device)
        return torch.cat([normalised, torch.ones(len(values), 1, device=values.device)], dim=1)

    def from_batch(self, batch: dict) -> Tensor:
        if self.dataset is None or not hasattr(self.dataset, "properties"):
            raise UnnoiseError("model.conditions: property needs a molecule dataset with properties")
        index = batch["index"]
        return self.encode(torch.stack([self.dataset.properties[name][index] for name in self.names], dim=1))

    def null(self, n: int, device=None) -> Tensor:
        return torch.zeros(n, self._require() + 1, device=device)

    def dropout(self, part: Tensor, p: float, generator: torch.Generator) -> Tensor:
        if p <= 0:
            return part
        drop = drop_mask(len(part), p, generator).to(part.device)
        return torch.where(drop.unsqueeze(1), torch.zeros_like(part), part)

    def preview(self, n: int, device=None) -> Tensor:
        """A training preview is unconditional (the null part)."""
        return self.null(n, device)

    def from_request(self, value, n: int, device=None) -> Tensor:
        """The part for n samples from "alpha=80" or "alpha=80,gap=300" (or a dict {name: value}): every
        conditioning property must be given once, in the units of data/qm9.py's PROPERTIES."""
        self._require()
        given = parse_properties(value) if isinstance(value, str) else dict(value)
        unknown = sorted(set(given) - set(self.names))
        missing = [name for name in self.names if name not in given]
        if unknown or missing:
            bad = f"unknown {unknown[0]!r}" if unknown else f"missing {missing[0]!r}"
            raise UnnoiseError(f"--property: {bad}; this run is conditioned on {', '.join(self.names)} "
                               f"(e.g. --property {self.names[0]}=VALUE)")
        values = torch.tensor([[float(given[name]) for name in self.names]], dtype=torch.float32)
        return self.encode(values).expand(n, -1).to(device)


def parse_properties(text: str) -> dict:
    """{"alpha": 80.0, ...} from "alpha=80,gap=300"; a malformed item is a one-line error."""
    result = {}
    for item in (part.strip() for part in text.split(",")):
        name, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = None
        if not sep or not name.strip() or value is None or value != value or abs(value) == float("inf"):
            raise UnnoiseError(f"--property {text!r}: expected NAME=NUMBER[,NAME=NUMBER], e.g. alpha=80")
        result[name.strip()] = value
    return result
