"""ControlNet (nn/controlnet.py): the controlled U-Net starts as the base bit for bit, the base never trains,
gradients reach the zero convolutions, scale 0 is the base, a zero-scale extra control changes nothing."""
import pytest
import torch

from unnoise.nn import UNet, UNetConfig
from unnoise.nn.controlnet import ControlledUNet, ControlNet


def _base(**extra) -> UNet:
    torch.manual_seed(0)
    config = UNetConfig(in_channels=3, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                        attention_resolutions=(4,), image_size=8, groups=8, **extra)
    net = UNet(config)
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)  # a base that outputs something
    return net.eval()


def _control(images, scales):
    return {"images": images, "scales": torch.as_tensor(scales, dtype=torch.float32)}


def _inputs(batch=2, channels=1, factor=1):
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(batch, 3, 8, 8, generator=g), torch.rand(batch, generator=g) * 500
    control = torch.rand(batch, 1, channels, 8 * factor, 8 * factor, generator=g)
    return x, t, control


def _perturb(net: ControlledUNet, scale: float = 0.1):
    torch.manual_seed(2)
    with torch.no_grad():
        for p in net.control.parameters():
            p.add_(scale * torch.randn_like(p))


def test_controlled_output_equals_base_bit_for_bit_at_initialisation():
    base = _base()
    x, t, control = _inputs()
    expected = base(x, t)
    controlled = ControlledUNet.from_unet(base, control_channels=1)
    got = controlled(x, t, {"control": _control(control, [[1.0], [2.0]])})
    assert torch.equal(got, expected)
    assert not torch.equal(expected, torch.zeros_like(expected))


def test_copy_holds_the_base_encoder_weights_and_is_separate():
    base = _base()
    net = ControlNet.from_unet(base, 1)
    for name, value in base.down.state_dict().items():
        assert torch.equal(net.encoder.down.state_dict()[name], value)
    assert all(p.requires_grad for p in net.parameters())
    assert net.encoder.down[0][0].in_layers[2].weight.data_ptr() != base.down[0][0].in_layers[2].weight.data_ptr()
    assert len(net.zero_convs) == len(base.skip_channels)


def test_base_frozen_and_gradients_reach_the_zero_convolutions():
    base = _base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    controlled = ControlledUNet.from_unet(base, 1).train()
    x, t, control = _inputs()
    controlled(x, t, {"control": _control(control, [[1.0], [1.0]])}).square().mean().backward()
    assert all(p.grad is None for p in controlled.base.parameters())
    assert not controlled.base.training
    for conv in [*controlled.control.zero_convs, controlled.control.middle_out]:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    optimizer = torch.optim.SGD([p for p in controlled.parameters() if p.requires_grad], lr=0.1)
    optimizer.step()
    assert all(torch.equal(v, before[k]) for k, v in controlled.base.state_dict().items())
    assert any(conv.weight.abs().sum() > 0 for conv in controlled.control.zero_convs)


def test_scale_zero_is_the_base_and_zero_scale_extra_control_changes_nothing():
    base = _base()
    controlled = ControlledUNet.from_unet(base, 1)
    _perturb(controlled)
    x, t, control = _inputs()
    other = torch.rand_like(control)
    expected = base(x, t)
    assert torch.equal(controlled(x, t, {"control": _control(control, [[0.0], [0.0]])}), expected)
    single = controlled(x, t, {"control": _control(control, [[1.0], [0.5]])})
    assert not torch.equal(single, expected)
    both = controlled(x, t, {"control": _control(torch.cat([control, other], 1), [[1.0, 0.0], [0.5, 0.0]])})
    assert torch.equal(both, single)
    mixed = controlled(x, t, {"control": _control(control, [[1.0], [0.0]])})  # a guidance batch: per-row scales
    assert torch.equal(mixed[1], expected[1]) and torch.equal(mixed[0], single[0])


def test_latent_factor_and_patches_reach_the_first_feature_resolution():
    base = _base(patch_size=2)
    controlled = ControlledUNet.from_unet(base, 3, control_factor=2)
    x, t, control = _inputs(channels=3, factor=2)
    _perturb(controlled)
    out = controlled(x, t, {"control": _control(control, [[1.0], [1.0]])})
    assert out.shape == x.shape and not torch.equal(out, base(x, t))
    with pytest.raises(ValueError, match="control image must be"):
        controlled(x, t, {"control": _control(control[..., :8, :8], [[1.0], [1.0]])})
