"""Denoiser networks: ``forward(x, t, cond=None)``, built by name from dict configs."""
from .mlp import MLP, MLPConfig
from .registry import NETWORKS, build_network, network_config_from_dict
from .unet import UNet, UNetConfig
from .wavenet import WaveNet, WaveNetConfig

__all__ = ["MLP", "MLPConfig", "UNet", "UNetConfig", "WaveNet", "WaveNetConfig", "build_network", "network_config_from_dict", "NETWORKS"]
