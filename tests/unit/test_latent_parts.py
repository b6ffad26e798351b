"""The small parts of run/latent.py against exact answers: the latent mask of latent inpainting (a cell is
known when every pixel of its block is known in every channel), the fill of unknown pixels before encoding,
the forms model.codec takes, and the autoencoder's option checks."""
from __future__ import annotations

import itertools

import pytest
import torch

from unnoise.codec import IdentityCodec
from unnoise.errors import UnnoiseError
from unnoise.run.latent import LOSS_OPTIONS, _codec_run, _filled, autoencoder_options, latent_mask, load_run_codec, \
    loss_options


@pytest.mark.parametrize("factor", [2, 4])
def test_latent_mask_is_known_exactly_where_the_whole_block_is(factor):
    generator = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 3, 8, 8, generator=generator) < 0.9).float()
    mask[0] = 1  # one image wholly known
    found = latent_mask(mask, factor)
    assert found.shape == (3, 1, 8 // factor, 8 // factor) and found.dtype == torch.bool
    for b, i, j in itertools.product(range(3), range(8 // factor), range(8 // factor)):
        block = mask[b, :, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
        assert bool(found[b, 0, i, j]) == bool((block == 1).all())
    assert bool(found[0].all())


def test_unknown_pixels_are_filled_with_the_mean_of_the_known_ones():
    y = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    on = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    on[..., :2, :] = True
    filled = _filled(y, on)
    assert torch.equal(filled[..., :2, :], y[..., :2, :])
    expected = y[..., :2, :].mean((2, 3), keepdim=True).expand(2, 3, 2, 4)
    assert torch.equal(filled[..., 2:, :], expected)


def test_codec_values_name_a_run_or_the_identity(tmp_path):
    assert _codec_run("identity") is None and _codec_run({"kind": "identity"}) is None
    assert _codec_run("runs/ae") == _codec_run({"run": "runs/ae"}) == _codec_run({"run": "runs/ae", "sha256": "0"})
    assert isinstance(load_run_codec("identity"), IdentityCodec)
    for bad in (5, {"path": "x"}, {"run": 3}, {"run": "x", "extra": 1}):
        with pytest.raises(UnnoiseError, match="model.codec="):
            _codec_run(bad)
    with pytest.raises(UnnoiseError, match="no trained autoencoder at"):
        load_run_codec(str(tmp_path))


def test_autoencoder_options_are_filled_and_checked():
    assert autoencoder_options({}, (3, 32, 32)) == {"in_channels": 3, "factor": 4}
    assert autoencoder_options({"factor": 8, "multipliers": [1, 2, 2, 4]}, (3, 64, 64))["multipliers"] == [1, 2, 2, 4]
    for options, shape, fragment in (({"in_channels": 1}, (3, 32, 32), "the data has 3 channels"),
                                     ({"factor": 8}, (3, 36, 36), "does not divide"),
                                     ({"blocks": 1.5}, (3, 32, 32), "blocks=1.5")):
        with pytest.raises(UnnoiseError, match=fragment):
            autoencoder_options(options, shape)
    assert loss_options({}) == LOSS_OPTIONS and loss_options({"gan_start": 10})["gan_start"] == 10
    with pytest.raises(UnnoiseError, match="discriminator_lr=0"):
        loss_options({"discriminator_lr": 0})
