"""`unnoise export RUN --format diffusers`: our U-Net's weights under UNet2DModel's names compute the same
function, and an exported run loads in diffusers and in `unnoise sample` with the same outputs.

diffusers computes the timestep sinusoids in float32 whatever the model's dtype, so float64 outputs agree
to float32 rounding: the bound is 1e-5 of the outputs' scale."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")

from unnoise.cli.main import main  # noqa: E402
from unnoise.interop.export import converted_state, unet2d_config  # noqa: E402
from unnoise.nn.unet import UNet, UNetConfig  # noqa: E402

RELATIVE = 1e-5


def assert_matches(ours, theirs, what):
    scale = max(1.0, float(theirs.abs().max()))
    error = float((ours - theirs).abs().max())
    assert error <= RELATIVE * scale, f"{what}: max |ours - diffusers| = {error:.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("mult, attention, blocks", [((1, 2), (4,), 1), ((1, 2, 2), (4,), 2), ((1, 1), (8, 4), 1)])
@torch.no_grad()
def test_unet_weights_compute_the_same_function_in_unet2dmodel(mult, attention, blocks):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=3, base_channels=8, channel_mult=mult, num_res_blocks=blocks,
                          attention_resolutions=attention, image_size=8, groups=4, num_heads=2)).double()
    for parameter in net.parameters():  # every weight non-zero (the head starts at zero)
        parameter.normal_(0, 0.3)
    unet = UNet2DModel(**unet2d_config(net)).double()
    missing, unexpected = unet.load_state_dict(converted_state(net), strict=False)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([3.0, 700.0], dtype=torch.float64)
    ours = net(x, t)
    assert float(ours.abs().max()) > 0.1
    assert_matches(ours, unet(x, t).sample, f"U-Net {mult} {attention}")


TRAIN = ["--preset", "digits-unet", "--steps", "3", "--set", "model.process=ddpm", "--set", "model.prediction=v",
         "--set", "model.network_options.base_channels=8", "--set", "model.network_options.groups=4",
         "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "train.batch_size=8",
         "--set", "train.lr=0.05", "--set", "train.ema_decay=0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run, out = root / "run", root / "exported"
    assert main(["train", *TRAIN, "--out", str(run)]) == 0
    assert main(["export", str(run), "--format", "diffusers", "--out", str(out)]) == 0
    return run, out


@torch.no_grad()
def test_exported_run_loads_in_diffusers_and_in_unnoise(exported, tmp_path):
    from diffusers import DDIMScheduler, UNet2DModel

    from unnoise.interop.folder import load_diffusers
    from unnoise.run.load import load_run

    run, out = exported
    ours, config = load_run(run)
    ours = ours.double()
    unet = UNet2DModel.from_pretrained(out / "unet", use_safetensors=True).double()
    scheduler = DDIMScheduler.from_pretrained(out / "scheduler")
    assert scheduler.config.prediction_type == "v_prediction"
    x = torch.randn(3, *config.data_shape, dtype=torch.float64)
    t = torch.tensor([0.0, 250.0, 999.0], dtype=torch.float64)
    assert_matches(ours.net(x, t), unet(x, t).sample, "exported U-Net")
    reloaded = load_diffusers(out, dtype=torch.float64).denoiser
    sigma = ours.process.sigmas[t.long()]
    assert_matches(reloaded(x, sigma), ours(x, sigma), "denoiser of the exported folder")
    image = tmp_path / "x.png"
    assert main(["sample", str(out), "--n", "2", "--nfe", "3", "--sampler", "euler", "--out", str(image),
                 "--device", "cpu"]) == 0 and image.is_file()


def test_unexportable_runs_are_refused_with_the_reason(exported, tmp_path, user_error):
    run, _ = exported
    edm = tmp_path / "edm-run"
    shutil.copytree(run, edm)
    config = json.loads((edm / "config.json").read_text())
    config["model"].update(process="edm", prediction="edm")
    (edm / "config.json").write_text(json.dumps(config))
    user_error(["export", str(edm), "--out", str(tmp_path / "x")], "cannot export to diffusers",
               "process 'edm'")
    user_error(["export", str(run), "--out", str(exported[1])], "already exists")
