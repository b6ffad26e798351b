"""Registry of denoiser networks, built by name from plain (JSON-able) dicts."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torch import nn

from ..errors import UnnoiseError, unknown_name
from .atom_transformer import AtomTransformer, AtomTransformerConfig
from .egnn import EGNN, EGNNConfig
from .mlp import MLP, MLPConfig
from .transformer import Transformer, TransformerConfig
from .unet import UNet, UNetConfig
from .wavenet import WaveNet, WaveNetConfig

NETWORKS: dict[str, tuple[type, type[nn.Module]]] = {
    "mlp": (MLPConfig, MLP),
    "unet": (UNetConfig, UNet),
    "wavenet": (WaveNetConfig, WaveNet),
    # over token ids (text runs): vocab_size, input_size, causal and time_conditioned are filled from the data
    # and the categorical process by run/text.py
    "transformer": (TransformerConfig, Transformer),
    # molecules (B, N, 3 + F) with cond {"atom_mask": (B, N)}; num_features is filled from the data (run/molecules.py)
    "egnn": (EGNNConfig, EGNN),
    "atom_transformer": (AtomTransformerConfig, AtomTransformer),  # the non-equivariant molecule baseline
}


def _entry(kind: str) -> tuple[type, type[nn.Module]]:
    if kind not in NETWORKS:
        raise unknown_name("network", kind, NETWORKS)
    return NETWORKS[kind]


def network_config_from_dict(kind: str, d: Mapping[str, Any]) -> Any:
    """Build the config dataclass of network ``kind`` from a dict (lists become tuples).

    ``dataclasses.asdict(config)`` is the inverse, and both survive a JSON round trip.
    """
    config_cls, _ = _entry(kind)
    fields = dataclasses.fields(config_cls)
    names = [f.name for f in fields]
    for key in d:
        if key not in names:
            raise UnnoiseError(f"unknown {kind} config key {key!r}; valid: {', '.join(names)}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in d]
    if missing:
        raise UnnoiseError(f"{kind} config is missing required key(s): {', '.join(missing)}")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build_network(kind: str, config_dict: Mapping[str, Any] | Any) -> nn.Module:
    """Instantiate network ``kind`` from a config dict (or an already-built config)."""
    config_cls, net_cls = _entry(kind)
    if isinstance(config_dict, config_cls):
        return net_cls(config_dict)
    return net_cls(network_config_from_dict(kind, config_dict))
