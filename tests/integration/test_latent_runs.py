"""Autoencoder runs and latent runs (run/latent.py) end to end on tiny sizes: the autoencoder run writes its
codec with a latent scale that whitens its training latents; a latent run trains on them, records the codec's
path and SHA-256, samples decoded pixels, inpaints keeping the known pixels bit for bit, and refuses a missing
or changed codec in one line; through the
identity codec a run equals the pixel run bit for bit; bad values are one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("safetensors")

from unnoise.codec import load_codec  # noqa: E402
from unnoise.errors import UnnoiseError  # noqa: E402
from unnoise.pipeline import Pipeline, SampleRequest  # noqa: E402
from unnoise.run.config import config_from_dict  # noqa: E402
from unnoise.run.load import read_run_config  # noqa: E402
from unnoise.run.training import train_run  # noqa: E402

EPS32 = torch.finfo(torch.float32).eps
DATA = {"name": "landscapes", "options": {"size": 32, "n": 12, "split": "train"}}
TRAIN = {"steps": 2, "batch_size": 4, "sample_every": 0, "checkpoint_every": 0, "warmup_steps": 1, "threads": 1}
TINY_UNET = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4]}


def autoencoder_config(**model) -> dict:
    return json.loads(json.dumps({"data": DATA, "train": TRAIN, "model": {
        "network": "autoencoder", "network_options": {"channels": 8, "groups": 8}, **model}}))  # a fresh copy


def diffusion_config(codec=None, **model) -> dict:
    model = {"network": "unet", "process": "edm", "prediction": "edm", "network_options": TINY_UNET, **model}
    if codec is not None:
        model["codec"] = codec
    return json.loads(json.dumps({"data": DATA, "train": TRAIN, "model": model,
                                  "sample": {"sampler": "heun", "steps": 2, "n": 2}}))


def one_line_error(call, *fragments) -> str:
    with pytest.raises(UnnoiseError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("latent") / "ae"
    summary = train_run(config_from_dict(autoencoder_config()), run, preview=False)
    assert summary["steps"] == 2 and len(summary["codec_sha256"]) == 64
    return run


def test_autoencoder_run_writes_a_codec_whose_scale_whitens_its_training_latents(ae_run):
    codec = load_codec(ae_run / "codec")  # verifies the weights against codec.json's SHA-256
    config = read_run_config(ae_run)
    assert config.model.network_options["in_channels"] == 3 and config.train.loss_options["kl_weight"] == 1e-6
    pipe = Pipeline.load(ae_run, device="cpu")
    from unnoise.data import load_dataset

    images = load_dataset("landscapes", **DATA["options"]).x
    z = pipe.encode(images)
    assert z.shape == (12, 4, 8, 8) and z.dtype == torch.float32
    z64 = z.double()
    assert abs(float(z64.mean())) < 100 * EPS32 and abs(float(z64.std(unbiased=False)) - 1) < 100 * EPS32
    x_hat = pipe.decode(z)
    assert x_hat.shape == images.shape and x_hat.dtype == torch.float32
    assert torch.equal(x_hat, codec.decode(z).float())
    one_line_error(lambda: pipe.sample(SampleRequest(n=1)), "autoencoder run", "model.codec=")


def test_latent_run_trains_samples_decoded_pixels_and_records_its_codec(ae_run, tmp_path):
    run = tmp_path / "ldm"
    train_run(config_from_dict(diffusion_config(str(ae_run), conditions=["caption"])), run, preview=False)
    codec = load_codec(ae_run / "codec")
    for saved in (run / "config.json", run / "checkpoint" / "config.json"):
        record = json.loads(saved.read_text())["model"]["codec"]
        assert record["run"] == str(ae_run.resolve()) and record["sha256"] == codec.sha256
        assert record["latent_shape"] == [4, 8, 8] and record["scale"] == codec.latent_scale.scale
    config = read_run_config(run)
    assert config.data_shape == (3, 32, 32) and config.model.network_options["in_channels"] == 4
    pipe = Pipeline.load(run, device="cpu")
    x = pipe.sample(SampleRequest(n=2, prompt="a snowy mountain at night"))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    from unnoise.data.landscapes import render_landscapes
    from unnoise.pipeline import RestoreRequest
    from unnoise.restore.operators import Downsample, Mask

    image = render_landscapes([5], size=32, split="test")["images"]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, :13] = 1  # the left 13 columns known: 3 whole latent columns and part of a fourth
    operator = Mask(mask)
    for method in ("ddnm", "repaint"):
        out = pipe.restore(RestoreRequest(y=operator.forward(image), operator=operator, n=2, steps=3, method=method))
        known = mask.bool().expand_as(out.samples)
        assert out.samples.shape == (2, 3, 32, 32) and out.method == method
        assert torch.equal(out.samples[known], image.expand_as(out.samples)[known])  # bit for bit
        assert bool(torch.isfinite(out.samples).all())
    one_line_error(lambda: pipe.restore(RestoreRequest(y=image[..., ::2, ::2], operator=Downsample(2))),
                   "latent run", "inpainting")


def test_a_changed_or_missing_codec_is_refused_in_one_line(ae_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "ae-copy"
    shutil.copytree(ae_run, copy)
    run = tmp_path / "ldm"
    train_run(config_from_dict(diffusion_config({"run": str(copy)})), run, preview=False)
    assert Pipeline.load(run, device="cpu").sample(SampleRequest(n=1)).shape == (1, 3, 32, 32)
    weights = copy / "codec" / "autoencoder.safetensors"
    state = load_file(str(weights))
    first = sorted(state)[0]
    state[first] = state[first] + 1.0
    save_file(state, str(weights))  # tampered: codec.json still names the old weights
    one_line_error(lambda: Pipeline.load(run, device="cpu"), "model.codec", "the autoencoder changed")
    meta = json.loads((copy / "codec" / "codec.json").read_text())
    retrained = load_file(str(weights))
    from unnoise.nn.autoencoder import KLAutoencoder
    from unnoise.sample.auto.cache import weights_sha256

    model = KLAutoencoder(**meta["config"])
    model.load_state_dict(retrained)
    meta["sha256"] = weights_sha256(model)
    (copy / "codec" / "codec.json").write_text(json.dumps(meta))  # retrained: consistent, but not the run's
    one_line_error(lambda: Pipeline.load(run, device="cpu"), "the latent run recorded")
    one_line_error(lambda: train_run(None, run, resume=True, steps=3), "the latent run recorded")
    shutil.rmtree(copy)
    one_line_error(lambda: Pipeline.load(run, device="cpu"), "no trained autoencoder at", str(copy))


def test_identity_codec_run_equals_the_pixel_run_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    runs = {}
    for name, codec in (("pixel", None), ("identity", "identity")):
        runs[name] = tmp_path / name
        config = diffusion_config(codec)
        config["model"]["network_options"] = {**TINY_UNET, "attention_resolutions": [16]}  # pixels: 32, 16
        train_run(config_from_dict(config), runs[name], preview=False)
    assert read_run_config(runs["identity"]).model.codec == {"kind": "identity"}
    pixel, identity = (load_file(str(runs[k] / "checkpoint" / "ema.safetensors")) for k in ("pixel", "identity"))
    assert pixel.keys() == identity.keys() and all(torch.equal(pixel[k], identity[k]) for k in pixel)
    samples = [Pipeline.load(runs[k], device="cpu").sample(SampleRequest(n=2, seed=3)) for k in ("pixel", "identity")]
    assert torch.equal(samples[0], samples[1])


@pytest.mark.parametrize("change, fragments", [
    ({"model": {"network_options": {"factor": 3}}}, ("model.network_options.factor=3", "4 or 8")),
    ({"model": {"network_options": {"widht": 8}}}, ("model.network_options.widht", "channels")),
    ({"model": {"network_options": {"channels": 0}}}, ("model.network_options.channels=0",)),
    ({"model": {"network_options": {"multipliers": [1, 2]}}}, ("multipliers", "3 positive integers")),
    ({"model": {"conditions": ["label"]}}, ("model.conditions", "autoencoder run")),
    ({"train": {"loss_options": {"kl": 1}}}, ("train.loss_options.kl", "kl_weight")),
    ({"train": {"loss_options": {"ssim_weight": -1}}}, ("train.loss_options.ssim_weight=-1", ">= 0")),
    ({"train": {"loss_options": {"gan_start": "soon"}}}, ("train.loss_options.gan_start", "null")),
])
def test_bad_autoencoder_values_are_one_line_errors(tmp_path, change, fragments):
    config = autoencoder_config()
    for section, values in change.items():
        part = config.setdefault(section, {})
        for key, value in values.items():
            part[key] = {**part.get(key, {}), **value} if isinstance(value, dict) else value
    one_line_error(lambda: train_run(config_from_dict(config), tmp_path / "bad", preview=False), *fragments)


@pytest.mark.parametrize("codec, model, fragments", [
    (5, {}, ("model.codec=5",)),
    ({"path": "x"}, {}, ("model.codec=", "{run: PATH}")),
    ("identity", {"conditions": ["lowres"]}, ("lowres", "latent runs")),
])
def test_bad_codec_values_are_one_line_errors(tmp_path, codec, model, fragments):
    one_line_error(lambda: train_run(config_from_dict(diffusion_config(codec, **model)), tmp_path / "bad",
                                     preview=False), *fragments)


def test_eval_of_an_autoencoder_run_reports_reconstruction_quality(ae_run, tmp_path, capsys):
    from unnoise.cli.main import main
    from unnoise.data import load_dataset
    from unnoise.eval.reconstruction import reconstruction_metrics

    assert main(["eval", str(ae_run), "--n", "4", "--device", "cpu", "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    x = load_dataset("landscapes", size=32, n=4, split="test").x
    codec = load_codec(ae_run / "codec")
    with torch.no_grad():
        expected = reconstruction_metrics(x, codec.decode(codec.encode(x)).clamp(-1, 1))
    assert result["split"] == "test" and result["n"] == 4 and result["rfd"] is None
    assert result["psnr"] == expected["psnr"] and result["ssim"] == expected["ssim"]


def test_reconstruct_command_and_sampling_an_autoencoder_run(ae_run, tmp_path, capsys, user_error):
    from PIL import Image
    from safetensors.torch import load_file

    from unnoise.cli.main import main
    from unnoise.data.landscapes import render_landscapes

    image = render_landscapes([2], size=32, split="test")["images"][0]
    pixels = ((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "in.png")
    argv = ["reconstruct", str(ae_run), "--input", str(tmp_path / "in.png"), "--out", str(tmp_path / "rec.png"),
            "--latents", str(tmp_path / "z.safetensors"), "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["latent_shape"] == [4, 8, 8] and (tmp_path / "rec.png").is_file()
    assert load_file(str(tmp_path / "z.safetensors"))["latents"].shape == (1, 4, 8, 8)
    user_error(["sample", str(ae_run), "--out", str(tmp_path / "s.png")], "autoencoder run", "unnoise reconstruct")
    Image.fromarray(pixels[::2, ::2].copy()).save(tmp_path / "small.png")
    user_error(argv[:3] + [str(tmp_path / "small.png"), "--out", str(tmp_path / "rec.png")], "expected 32x32")
