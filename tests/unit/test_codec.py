"""Codecs: the identity round trip, the latent scale, saving and loading an autoencoder, refusing a
changed one."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("safetensors")

from unnoise.codec import (  # noqa: E402
    AutoencoderCodec, IdentityCodec, LatentScale, codec_from_record, load_codec, measure_latent_scale,
    save_autoencoder,
)
from unnoise.errors import UnnoiseError  # noqa: E402
from unnoise.nn.autoencoder import KLAutoencoder  # noqa: E402
from unnoise.sample.auto.cache import weights_sha256  # noqa: E402

EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return KLAutoencoder(factor=4, channels=16, latent_channels=4).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_identity_codec_round_trips_bit_for_bit(images):
    codec = codec_from_record({"kind": "identity"})
    assert isinstance(codec, IdentityCodec) and codec_from_record(None).record() == {"kind": "identity"}
    assert torch.equal(codec.encode(images), images) and torch.equal(codec.decode(codec.encode(images)), images)
    assert codec.latent_shape((3, 32, 32)) == (3, 32, 32)


def test_latent_scale_is_applied_and_inverted_exactly():
    generator = torch.Generator().manual_seed(2)
    mean = 3.0 + 7.0 * torch.randn(4, 4, 8, 8, generator=generator)
    scale = LatentScale(scale=1 / 7.0, shift=3.0)
    z = scale.apply(mean)
    expected = ((mean.double() - 3.0) / 7.0).float()  # one float64 evaluation, rounded once
    assert torch.equal(z, expected)
    back = scale.invert(z)
    # z is rounded to float32 once; the inverse is within one rounding of the original mean.
    assert torch.allclose(back, mean, rtol=0, atol=2 * EPS32 * float(mean.abs().max()))
    identity = LatentScale()
    assert torch.equal(identity.invert(identity.apply(mean)), mean)


def test_measured_scale_whitens_the_training_latents(autoencoder, images):
    scale = measure_latent_scale(autoencoder, images, batch=5)
    codec = AutoencoderCodec(autoencoder, scale)
    with torch.no_grad():
        z = codec.encode(images).double()
        raw = autoencoder.encode(images)[0]
    assert abs(float(z.mean())) < 100 * EPS32 and abs(float(z.std(unbiased=False)) - 1) < 100 * EPS32
    assert abs(scale.shift - float(raw.double().mean())) < 10 * EPS32 * float(raw.abs().max())
    assert codec.latent_shape((3, 32, 32)) == (4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(codec.decode(z.float()), autoencoder.decode(raw), atol=100 * EPS32)


def test_saved_autoencoder_loads_identically_and_records_its_hash(tmp_path, autoencoder, images):
    saved = save_autoencoder(tmp_path / "ae", autoencoder, LatentScale(0.5, 0.1))
    loaded = codec_from_record(saved.record())
    assert loaded.sha256 == saved.sha256 and len(saved.sha256) == 64
    with torch.no_grad():
        assert torch.equal(loaded.encode(images), saved.encode(images))
        assert torch.equal(loaded.decode(saved.encode(images)), saved.decode(saved.encode(images)))
    relative = codec_from_record({**saved.record(), "path": "ae"}, base=tmp_path)
    assert relative.sha256 == saved.sha256


def test_a_changed_autoencoder_is_refused(tmp_path, autoencoder):
    from safetensors.torch import load_file, save_file

    saved = save_autoencoder(tmp_path / "ae", autoencoder, LatentScale())
    record = saved.record()
    weights = tmp_path / "ae" / "autoencoder.safetensors"
    state = load_file(str(weights))
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 1e-3
    save_file(state, str(weights))
    with pytest.raises(UnnoiseError) as error:
        codec_from_record(record)
    assert "changed" in str(error.value) and "\n" not in str(error.value)
    meta = json.loads((tmp_path / "ae" / "codec.json").read_text())  # re-sealed, but not what the run saw
    meta["sha256"] = weights_sha256(_loaded(state))
    (tmp_path / "ae" / "codec.json").write_text(json.dumps(meta))
    with pytest.raises(UnnoiseError, match="latent run recorded"):
        load_codec(tmp_path / "ae", expected_sha256=record["sha256"])
    assert load_codec(tmp_path / "ae").sha256 == meta["sha256"]


def _loaded(state):
    model = KLAutoencoder(factor=4, channels=16, latent_channels=4)
    model.load_state_dict(state)
    return model


def test_bad_codec_directories_are_one_line_errors(tmp_path):
    for setup in ("missing", "garbage", "no weights"):
        directory = tmp_path / setup.replace(" ", "_")
        directory.mkdir()
        if setup == "garbage":
            (directory / "codec.json").write_text("{not json")
        if setup == "no weights":
            (directory / "codec.json").write_text(json.dumps(
                {"config": {}, "scale": 1.0, "shift": 0.0, "weights": "w.safetensors", "sha256": "0" * 64}))
        with pytest.raises(UnnoiseError) as error:
            load_codec(directory)
        assert "\n" not in str(error.value) and str(directory) in str(error.value)
    with pytest.raises(UnnoiseError):
        codec_from_record({"kind": "vqgan"})
