"""ControlNet runs end to end on a tiny shapes base: the control run takes its base's network, records and
keeps the base's hash, trains only the control branch, and samples through the pipeline with control
images (scale 0 = the base, an extra zero-scale control = one control, guidance on the control)."""
import json

import pytest
import torch

from unnoise.control.edges import canny
from unnoise.data.shapes import load_shapes
from unnoise.errors import UnnoiseError
from unnoise.pipeline import Pipeline, SampleRequest
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.control import check_base, tensors_sha256
from unnoise.run.checkpoint import read_checkpoint_tensors
from unnoise.run.presets import preset
from unnoise.run.training import train_run

TINY_DATA = ["data.options.n=64", "data.options.size=16"]
TINY_TRAIN = ["train.batch_size=8", "train.checkpoint_every=0", "train.log_every=1", "train.warmup_steps=1",
              "train.threads=1", "sample.steps=3", "sample.n=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    base = config_from_dict(apply_overrides(preset("shapes"), TINY_DATA + TINY_TRAIN + [
        "train.steps=2", "model.network_options.base_channels=8", "model.network_options.channel_mult=[1,2]",
        "model.network_options.attention_resolutions=[]", 'model.conditions=["label"]']))
    train_run(base, root / "base", preview=False)
    control = config_from_dict(apply_overrides(preset("shapes-control"), TINY_DATA + TINY_TRAIN + [
        "train.steps=3", "train.lr=0.01", f"model.init_from.run={root / 'base'}"]))
    train_run(control, root / "control", preview=False)
    return root


def test_control_run_takes_the_base_network_and_keeps_its_weights(runs):
    saved = json.loads((runs / "control" / "config.json").read_text())
    base_saved = json.loads((runs / "base" / "config.json").read_text())
    assert saved["model"]["network_options"] == base_saved["model"]["network_options"]
    assert saved["model"]["conditions"] == ["label", "control"]  # the base's conditions, and the control
    base_weights = read_checkpoint_tensors(runs / "base", "ema.safetensors")
    assert saved["model"]["init_from"]["sha256"] == tensors_sha256(base_weights)
    pipe = Pipeline.load(runs / "control", device="cpu")
    check_base(pipe.denoiser.net, pipe.config)  # the trained run's base is the base run, bit for bit
    control_weights = read_checkpoint_tensors(runs / "control", "model.safetensors")
    assert all(torch.equal(control_weights[f"base.{k}"], v) for k, v in base_weights.items())
    zero = control_weights["control.zero_convs.0.weight"]
    assert zero.abs().sum() > 0  # the control branch trained


def test_sampling_with_controls(runs):
    pipe, base = Pipeline.load(runs / "control", device="cpu"), Pipeline.load(runs / "base", device="cpu")
    edges = canny(load_shapes(size=16, n=1).x)[0]  # (1, 16, 16)
    request = dict(n=2, seed=3, sampler="euler", steps=3)
    plain = base.sample(SampleRequest(**request))
    assert torch.equal(pipe.sample(SampleRequest(**request)), plain)  # no control: the base
    assert torch.equal(pipe.sample(SampleRequest(**request, control={"images": [edges], "scales": [0.0]})), plain)
    one = pipe.sample(SampleRequest(**request, control=edges))
    assert not torch.equal(one, plain)
    two = pipe.sample(SampleRequest(**request, control={"images": [edges, 1 - edges], "scales": [1.0, 0.0]}))
    assert torch.equal(two, one)
    assert not torch.equal(pipe.sample(SampleRequest(**request, control=edges, guidance=2.0)), one)
    big = torch.nn.functional.interpolate(edges[None], scale_factor=2)[0]  # resized: same aspect ratio
    assert torch.equal(pipe.sample(SampleRequest(**request, control=big)), one)
    with pytest.raises(UnnoiseError, match="aspect ratio"):
        pipe.sample(SampleRequest(**request, control=edges[..., :8]))
    with pytest.raises(UnnoiseError, match="not a ControlNet run"):
        base.sample(SampleRequest(**request, control=edges))


def test_guidance_acts_on_the_control_alone_or_on_the_other_conditions(runs, assert_close_eps):
    pipe, base = Pipeline.load(runs / "control", device="cpu"), Pipeline.load(runs / "base", device="cpu")
    edges = canny(load_shapes(size=16, n=1).x)[0]
    request = SampleRequest(n=2, control=edges, guidance=3.0)
    cond = pipe.condition(request, 2)
    x, sigma = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([2.0, 0.5])
    with torch.no_grad():
        guided = pipe.guided(request)(x, sigma, cond)
        d_control, d_base = pipe.denoiser(x, sigma, cond), base.denoiser(x, sigma)
    assert_close_eps(guided, d_base + 3.0 * (d_control - d_base), ulps=512, scale=x.abs().max())
    # with a class too, the control stays in both branches and guidance acts on the class
    request = SampleRequest(n=2, control=edges, label=1, guidance=3.0)
    cond = pipe.condition(request, 2)
    null_label = {**cond, "label": torch.full((2,), pipe.conditions.get("label").null_label)}
    with torch.no_grad():
        guided = pipe.guided(request)(x, sigma, cond)
        d_class, d_no_class = pipe.denoiser(x, sigma, cond), pipe.denoiser(x, sigma, null_label)
    assert_close_eps(guided, d_no_class + 3.0 * (d_class - d_no_class), ulps=512, scale=x.abs().max())


def test_cli_samples_with_control_images(runs, tmp_path, user_error):
    from PIL import Image

    from unnoise.cli.main import main

    edges = canny(load_shapes(size=16, n=1).x)[0, 0]
    png = tmp_path / "edges.png"
    Image.fromarray((edges.numpy() * 255).astype("uint8")).save(png)
    out = tmp_path / "samples.png"
    assert main(["sample", str(runs / "control"), "--control", str(png), "--control", str(png), "--control-scale",
                 "0.5", "--n", "2", "--steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    assert out.is_file()
    user_error(["sample", str(runs / "control"), "--control-scale", "2", "--out", str(out)], "--control-scale")
    user_error(["sample", str(runs / "control"), "--control", str(tmp_path / "missing.png"), "--out", str(out)],
               "not found")


def test_a_changed_base_is_refused(runs):
    import dataclasses

    from unnoise.run.control import control_config
    from unnoise.run.load import read_run_config

    config = read_run_config(runs / "control")
    assert control_config(config).model.init_from == config.model.init_from  # resuming: the same base
    model = dataclasses.replace(config.model, init_from={**config.model.init_from, "sha256": "0" * 64})
    with pytest.raises(UnnoiseError, match="changed since"):
        control_config(dataclasses.replace(config, model=model))
    other_size = config_from_dict(apply_overrides(preset("shapes-control"), [
        "data.options.n=8", "data.options.size=32", f"model.init_from.run={runs / 'base'}"]))
    with pytest.raises(UnnoiseError, match=r"data of shape \(3, 16, 16\)"):
        train_run(other_size, runs / "other", preview=False)
    pipe = Pipeline.load(runs / "control", device="cpu")
    with torch.no_grad():
        pipe.denoiser.net.base.stem.weight[0, 0, 0, 0] += 1e-6
    with pytest.raises(UnnoiseError, match="base weights changed"):
        check_base(pipe.denoiser.net, pipe.config)


def test_control_on_a_latent_base(tmp_path):
    """A latent base: the control image stays at the data's size and is encoded down to the latent size; the
    training controls come from the images (not the latents); scale 0 is still exactly the base."""
    from unnoise.data.landscapes import load_landscapes

    data = {"name": "landscapes", "options": {"size": 32, "n": 8, "split": "train"}}
    train = {"steps": 2, "batch_size": 4, "sample_every": 0, "checkpoint_every": 0, "warmup_steps": 1, "threads": 1}
    autoencoder = {"network": "autoencoder", "network_options": {"channels": 8, "groups": 8}}
    train_run(config_from_dict({"data": data, "train": train, "model": autoencoder}), tmp_path / "ae", preview=False)
    unet = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": []}
    latent = {"network": "unet", "process": "edm", "prediction": "edm", "codec": str(tmp_path / "ae"),
              "network_options": unet}
    train_run(config_from_dict({"data": data, "train": train, "model": latent, "sample": {"steps": 2, "n": 2}}),
              tmp_path / "ldm", preview=False)
    control = config_from_dict(apply_overrides(preset("landscapes-control"), [
        "data.options.n=8", "data.options.size=32", "train.steps=2", "train.batch_size=4",
        "train.checkpoint_every=0", "train.threads=1",
        "train.lr=0.01", f"model.init_from.run={tmp_path / 'ldm'}"]))
    train_run(control, tmp_path / "seg", preview=False)
    pipe, base = Pipeline.load(tmp_path / "seg", device="cpu"), Pipeline.load(tmp_path / "ldm", device="cpu")
    assert pipe.denoiser.net.control.downsample == 4 and pipe.config.model.codec == base.config.model.codec
    check_base(pipe.denoiser.net, pipe.config)
    seg = load_landscapes(size=32, n=1)
    image = pipe.conditions.get("control").kind.extract(seg.x, torch.tensor([0]), seg)[0]  # (3, 32, 32) class colours
    request = dict(n=2, seed=1, sampler="euler", steps=2)
    plain = base.sample(SampleRequest(**request))
    assert plain.shape == (2, 3, 32, 32)
    assert torch.equal(pipe.sample(SampleRequest(**request, control={"images": [image], "scales": [0]})), plain)
    assert not torch.equal(pipe.sample(SampleRequest(**request, control=image)), plain)
