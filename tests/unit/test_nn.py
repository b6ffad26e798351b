"""Tests for unnoise.nn: shapes, conditioning, gradients, registry, determinism."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from unnoise.errors import UnnoiseError
from unnoise.nn import NETWORKS, MLP, MLPConfig, UNet, UNetConfig, build_network, network_config_from_dict
from unnoise.nn.embedding import FourierEmbedding, NoiseEmbedding, SinusoidalEmbedding

SMALL_UNET = dict(in_channels=1, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(4,), image_size=8, groups=8)


def _t(batch: int) -> torch.Tensor:
    return torch.linspace(-500.0, 999.5, batch)


def _unzero_head(net: nn.Module) -> nn.Module:
    """Give the zero-initialised output layer random weights (so outputs depend on inputs)."""
    last = net.head[-1] if isinstance(net, UNet) else net.out[-1]
    nn.init.normal_(last.weight, std=0.1)
    return net


# ---------------------------------------------------------------- embeddings
@pytest.mark.parametrize("cls", [SinusoidalEmbedding, FourierEmbedding])
@pytest.mark.parametrize("dim", [16, 7])
def test_embedding_shape_and_distinct(cls, dim):
    emb = cls(dim)(torch.tensor([-500.0, -0.5, 0.0, 0.25, 999.0]))
    assert emb.shape == (5, dim) and torch.isfinite(emb).all()
    assert torch.cdist(emb, emb).add(torch.eye(5)).min() > 1e-3  # distinct inputs, distinct codes


def test_fourier_frequencies_saved_and_sinusoidal_not():
    assert "freqs" in FourierEmbedding(8).state_dict()
    assert "freqs" not in SinusoidalEmbedding(8).state_dict()
    assert NoiseEmbedding("fourier", 8, 32)(torch.zeros(3)).shape == (3, 32)


def test_unknown_embedding():
    with pytest.raises(UnnoiseError, match="fourier, sinusoidal"):
        NoiseEmbedding("nope", 8, 8)
    with pytest.raises(UnnoiseError, match="embedding"):
        MLPConfig(in_dim=2, embedding="nope")


# ---------------------------------------------------------------- shapes
def test_mlp_shapes():
    torch.manual_seed(0)
    assert MLP(MLPConfig(in_dim=2, hidden=32, depth=2))(torch.randn(5, 2), _t(5)).shape == (5, 2)
    net = MLP(MLPConfig(in_dim=64, hidden=32, depth=2, embedding="fourier"))
    assert net(torch.randn(3, 1, 8, 8), _t(3)).shape == (3, 1, 8, 8)
    assert MLP(MLPConfig(in_dim=2, out_dim=4, hidden=16, depth=1))(torch.randn(3, 2), _t(3)).shape == (3, 4)
    with pytest.raises(ValueError, match="64 features"):
        net(torch.randn(3, 2, 8, 8), _t(3))


@pytest.mark.parametrize("cfg, shape", [
    (SMALL_UNET, (2, 1, 8, 8)),
    (dict(in_channels=3, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
          attention_resolutions=(8,), image_size=16, scale_shift=True), (2, 3, 16, 16)),
    (dict(in_channels=1, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
          attention_resolutions=(16,), image_size=64, dims=1, num_heads=2), (2, 1, 64)),
])
def test_unet_shapes(cfg, shape):
    torch.manual_seed(0)
    net = _unzero_head(UNet(UNetConfig(**cfg)))
    out = net(torch.randn(shape), _t(shape[0]))
    assert out.shape == shape and torch.isfinite(out).all()


def test_unet_out_channels_scalar_t_and_odd_groups():
    cfg = UNetConfig(in_channels=3, out_channels=6, base_channels=24, channel_mult=(1, 2), num_res_blocks=1,
                     image_size=8, groups=32, num_heads=3)  # 24 and 48 channels: gcd-safe GroupNorm
    assert UNet(cfg)(torch.randn(2, 3, 8, 8), torch.tensor(10.0)).shape == (2, 6, 8, 8)


def test_unet_config_errors():
    with pytest.raises(ValueError, match="multiple of 2"):
        UNetConfig(in_channels=1, channel_mult=(1, 2, 2), image_size=10)
    with pytest.raises(ValueError, match="attention_resolutions"):
        UNetConfig(in_channels=1, channel_mult=(1, 2), image_size=8, attention_resolutions=(16,))
    with pytest.raises(ValueError, match="num_heads"):
        UNetConfig(in_channels=1, base_channels=10, channel_mult=(1,), image_size=8, num_heads=4)
    net = UNet(UNetConfig(**SMALL_UNET))
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.randn(1, 1, 6, 7), _t(1))
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(1, 3, 8, 8), _t(1))


# ---------------------------------------------------------------- conditioning
@pytest.mark.parametrize("kind, cfg, shape", [
    ("mlp", dict(in_dim=2, hidden=32, depth=2, num_classes=3), (4, 2)),
    ("unet", dict(SMALL_UNET, num_classes=3), (4, 1, 8, 8)),
])
def test_class_conditioning(kind, cfg, shape):
    torch.manual_seed(0)
    net = _unzero_head(build_network(kind, cfg)).eval()
    x, t = torch.randn(shape), _t(shape[0])
    out0, out1 = net(x, t, torch.zeros(4, dtype=torch.long)), net(x, t, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(out0, out1)
    assert net.null_class == 3
    null = torch.full((4,), net.null_class, dtype=torch.long)
    torch.testing.assert_close(net(x, t), net(x, t, null))
    assert not torch.allclose(net(x, t), out0)


def test_cond_on_unconditional_network_raises():
    net = MLP(MLPConfig(in_dim=2, hidden=8, depth=1))
    with pytest.raises(ValueError, match="num_classes=0"):
        net(torch.randn(2, 2), _t(2), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------- gradients / determinism
@pytest.mark.parametrize("kind, cfg, shape", [
    ("mlp", dict(in_dim=2, hidden=32, depth=2, num_classes=2), (4, 2)),
    ("unet", dict(SMALL_UNET, num_classes=2, scale_shift=True), (4, 1, 8, 8)),
])
def test_gradients_reach_all_parameters(kind, cfg, shape):
    torch.manual_seed(0)
    net = build_network(kind, cfg)
    x, t, y = torch.randn(shape), _t(shape[0]), torch.tensor([0, 1, 0, 1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # first step moves the zero-initialised head away from zero
        opt.zero_grad()
        (net(x, t, y) - x).square().mean().backward()
        opt.step()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    net = _unzero_head(UNet(UNetConfig(**SMALL_UNET, dropout=0.5))).eval()
    x, t = torch.randn(2, 1, 8, 8), _t(2)
    torch.testing.assert_close(net(x, t), net(x, t), rtol=0, atol=0)


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize("kind, cfg", [("mlp", dict(in_dim=2, out_dim=None, embedding="fourier")),
                                       ("unet", SMALL_UNET)])
def test_config_json_round_trip(kind, cfg):
    config = network_config_from_dict(kind, cfg)
    back = network_config_from_dict(kind, json.loads(json.dumps(dataclasses.asdict(config))))
    assert back == config and isinstance(back, NETWORKS[kind][0])
    torch.manual_seed(1)
    a = build_network(kind, dataclasses.asdict(config))
    torch.manual_seed(1)
    b = build_network(kind, back)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_registry_errors():
    with pytest.raises(UnnoiseError, match="unknown network 'nope'; valid: atom_transformer, egnn, mlp, transformer"):
        build_network("nope", {})
    with pytest.raises(UnnoiseError, match="'widht'.*valid: in_dim, hidden"):
        network_config_from_dict("mlp", {"in_dim": 2, "widht": 3})
    with pytest.raises(UnnoiseError, match="in_channels"):
        network_config_from_dict("unet", {})
    with pytest.raises(UnnoiseError, match="multiple of 2"):  # value errors are user errors too
        build_network("unet", {"in_channels": 1, "image_size": 30})
