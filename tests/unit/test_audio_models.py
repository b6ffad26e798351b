"""Networks for waveforms: the U-Net with dims=1 (the same class as for images) and the DiffWave stack."""
import pytest
import torch

from unnoise.nn import UNet, UNetConfig, WaveNet, WaveNetConfig, build_network
from unnoise.nn.config import NetworkConfigError
from unnoise.run.build import resolve_config
from unnoise.cli.sample import class_index
from unnoise.run.config import config_from_dict


def test_one_unet_class_serves_signals_and_images():
    options = dict(in_channels=1, base_channels=8, groups=4, channel_mult=(1, 2), num_classes=3)
    signal, image = UNet(UNetConfig(image_size=64, dims=1, **options)), UNet(UNetConfig(image_size=8, **options))
    assert type(signal) is type(image)
    assert isinstance(signal.stem, torch.nn.Conv1d) and isinstance(image.stem, torch.nn.Conv2d)
    kinds = lambda net: [type(m).__name__.replace("1d", "").replace("2d", "") for m in net.modules()]
    assert kinds(signal) == kinds(image)  # the same layers, convolutions and resampling in 1-D
    out = signal(torch.randn(2, 1, 64), torch.zeros(2), torch.tensor([0, 2]))
    assert out.shape == (2, 1, 64)


def test_resolve_picks_one_dimensional_unet_for_signals():
    config = config_from_dict({"model": {"network": "unet", "network_options": {"base_channels": 8, "groups": 4,
                                                                                "channel_mult": [1, 2]}}})
    resolved = resolve_config(config, (1, 256), 12, class_names=[f"n{i}" for i in range(12)], sample_rate=8000)
    assert resolved.model.network_options["dims"] == 1 and resolved.sample_rate == 8000
    net = build_network("unet", resolved.model.network_options)
    assert net(torch.randn(1, 1, 256), torch.zeros(1)).shape == (1, 1, 256)
    assert class_index("n3", resolved) == 3 and class_index("5", resolved) == 5


def test_wavenet_receptive_field_and_causality_free_context():
    torch.manual_seed(0)
    config = WaveNetConfig(in_channels=1, residual_channels=8, layers=4, cycle=2, num_classes=2)
    assert config.receptive_field == 1 + 2 * (1 + 2 + 1 + 2)
    net = WaveNet(config)
    torch.nn.init.normal_(net.head[-1].weight)  # the zero-initialised output layer would hide everything
    x, t = torch.randn(1, 1, 64), torch.zeros(1)
    y = net(x, t, torch.tensor([1]))
    poked = x.clone()
    poked[0, 0, 32] += 1.0
    changed = (net(poked, t, torch.tensor([1])) - y).abs()[0, 0] > 0
    reach = config.receptive_field // 2
    assert changed[32 - reach:32 + reach + 1].any() and not changed[:32 - reach].any()
    assert not changed[32 + reach + 1:].any()
    assert not torch.allclose(y, net(x, t, torch.tensor([0])))  # the class reaches the output


def test_wavenet_rejects_bad_config_and_input():
    with pytest.raises(NetworkConfigError, match="layers"):
        WaveNetConfig(in_channels=1, layers=0)
    with pytest.raises(ValueError, match="WaveNet expects"):
        WaveNet(WaveNetConfig(in_channels=1, residual_channels=4, layers=1))(torch.randn(1, 2, 16), torch.zeros(1))


@pytest.mark.parametrize("shape, dims", [((2, 3, 48), 1), ((2, 3, 8, 12), 2)])
def test_patches_fold_into_channels_and_back(shape, dims):
    from unnoise.nn.unet import fold_patches, unfold_patches

    x = torch.randn(shape)
    folded = fold_patches(x, 4)
    assert folded.shape == (shape[0], shape[1] * 4**dims, *(s // 4 for s in shape[2:]))
    assert torch.equal(unfold_patches(folded, 4), x)
    if dims == 1:  # channel c * p + k of position j is sample j * p + k of channel c
        assert torch.equal(folded[1, 2 * 4 + 3, 5], x[1, 2, 5 * 4 + 3])


def test_patched_unet_keeps_the_signal_shape_and_checks_the_length():
    net = UNet(UNetConfig(in_channels=1, image_size=128, dims=1, patch_size=16, base_channels=8, groups=4,
                          channel_mult=(1, 2), num_classes=2))
    assert net.stem.in_channels == 16
    assert net(torch.randn(2, 1, 128), torch.zeros(2), torch.tensor([0, 1])).shape == (2, 1, 128)
    with pytest.raises(NetworkConfigError, match="multiple of 2.*patch_size"):
        UNetConfig(in_channels=1, image_size=100, dims=1, patch_size=16, channel_mult=(1, 2))
