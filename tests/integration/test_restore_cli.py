"""`unnoise restore` end to end, SR3 conditioning, and the one-line errors for bad inputs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unnoise.cli.main import main
from unnoise.errors import UnnoiseError
from unnoise.nn.unet import UNet, UNetConfig
from unnoise.restore import Mask
from unnoise.restore.sampling import posterior_samples
from unnoise.restore.superres import sr_training_condition, upsample_bicubic

QUIET = ["--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "train.log_every=5"]
TINY_UNET = ["--set", "model.network_options.base_channels=8", "--set", "model.network_options.groups=4",
             "--set", "model.network_options.attention_resolutions=[]", "--set", "model.network_options.num_heads=1"]




@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--preset", "digits", "--steps", "10", "--out", str(run), *QUIET,
                 "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2"]) == 0
    return run


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "sr"
    assert main(["train", "--preset", "digits-sr", "--steps", "5", "--batch-size", "16", "--out", str(run),
                 *QUIET, *TINY_UNET]) == 0
    return run


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "rgb"
    assert main(["train", "--preset", "shapes", "--steps", "2", "--batch-size", "4", "--out", str(run), *QUIET,
                 *TINY_UNET, "--set", "data.options.n=16", "--set", "data.options.size=16"]) == 0
    return run


def _png(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return path


def _digit_png(tmp_path, size=8):
    from unnoise.data import load_dataset

    x = load_dataset("digits", split="test").x[0, 0]
    pixels = ((x + 1) * 127.5).round().clamp(0, 255).numpy()
    if size != 8:
        pixels = pixels[::8 // size, ::8 // size]
    return _png(tmp_path / f"digit{size}.png", pixels)


def test_unet_concatenates_the_condition_image():
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=1, base_channels=8, groups=4, channel_mult=(1, 2), image_size=8,
                          cond_channels=1))
    torch.nn.init.normal_(net.head[-1].weight)  # the zero-initialised head would hide the condition
    x, t = torch.randn(2, 1, 8, 8), torch.zeros(2)
    a, b = net(x, t, {"image": torch.zeros(2, 1, 8, 8)}), net(x, t, {"image": torch.ones(2, 1, 8, 8)})
    assert a.shape == (2, 1, 8, 8) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="image-conditioned"):
        net(x, t)
    with pytest.raises(ValueError, match="image-conditioned"):
        net(x, t, {"image": torch.ones(2, 1, 4, 4)})


def test_sr_condition_is_the_upsampled_average_pool():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    cond = sr_training_condition(x, 4)["image"]
    low = x.reshape(3, 1, 2, 4, 2, 4).mean((3, 5))  # 4x4 block means
    assert torch.allclose(cond, upsample_bicubic(low, 4))
    assert cond.shape == x.shape


def test_super_resolution_config_errors(capsys, tmp_path, user_error):
    user_error(["train", "--preset", "digits-sr", "--out", str(tmp_path / "a"), "--set",
                         "model.super_resolution=3"], "model.super_resolution", "2 or 4")
    user_error(["train", "--preset", "digits", "--out", str(tmp_path / "b"), "--set",
                         "model.super_resolution=4"], "model.super_resolution needs model.network=unet")


def test_sr_run_restores_and_refuses_plain_sampling(sr_run, tmp_path, capsys, user_error):
    config = json.loads((sr_run / "config.json").read_text())
    assert config["model"]["network_options"]["cond_channels"] == 1
    low = _digit_png(tmp_path, size=2)
    out = tmp_path / "out"
    assert main(["restore", str(sr_run), "--task", "sr", "--input", str(low), "--n", "3", "--steps", "4",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "sr3" and summary["n"] == 3
    with Image.open(out / "sample_00.png") as image:
        assert image.size == (8, 8)
    user_error(["sample", str(sr_run), "--out", str(tmp_path / "s.png")], "super-resolution run",
                "unnoise restore")
    user_error(["restore", str(sr_run), "--task", "inpaint", "--input", str(low), "--out", str(out)],
                "only does --task sr")
    user_error(["restore", str(sr_run), "--task", "sr", "--input", str(_digit_png(tmp_path)),
                         "--out", str(out)], "digit8.png", "size 8x8, expected 2x2")


def test_inpainting_keeps_known_pixels_bit_for_bit(digits_run, tmp_path):
    image = _digit_png(tmp_path)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 1:5] = 255  # white: fill in
    mask_path = _png(tmp_path / "mask.png", mask)
    out = tmp_path / "out"
    for method in ("ddnm", "repaint", "dps", "tweedie"):
        assert main(["restore", str(digits_run), "--task", "inpaint", "--input", str(image), "--mask",
                     str(mask_path), "--n", "2", "--steps", "3", "--method", method, "--out", str(out)]) == 0
        original = np.asarray(Image.open(image))
        for k in range(2):
            restored = np.asarray(Image.open(out / f"sample_{k:02d}.png"))
            assert np.array_equal(restored[mask == 0], original[mask == 0]), method
        assert json.loads((out / "summary.json").read_text())["measurement_error"] == 0.0
    for name in ("mean.png", "std.png", "samples.png"):
        assert (out / name).stat().st_size > 0


def test_sr_and_deblur_zero_shot_are_consistent(digits_run, tmp_path):
    out = tmp_path / "out"
    assert main(["restore", str(digits_run), "--task", "sr", "--input", str(_digit_png(tmp_path, 4)), "--scale",
                 "2", "--n", "2", "--steps", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "ddnm" and summary["measurement_error"] < 1e-5
    assert main(["restore", str(digits_run), "--task", "deblur", "--input", str(_digit_png(tmp_path)),
                 "--blur-sigma", "0.7", "--n", "2", "--steps", "3", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["measurement_error"] < 1e-3


def test_colorize_restores_the_gray_image(rgb_run, tmp_path):
    gray = _png(tmp_path / "gray.png", np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1)))
    out = tmp_path / "out"
    assert main(["restore", str(rgb_run), "--task", "colorize", "--input", str(gray), "--n", "2", "--steps", "3",
                 "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["measurement_error"] < 1e-5  # luma(x) = y in float
    sample = np.asarray(Image.open(out / "sample_00.png"), dtype=np.float64) / 127.5 - 1
    assert sample.shape == (16, 16, 3)
    luma, target = sample @ np.array([0.299, 0.587, 0.114]), np.asarray(Image.open(gray)) / 127.5 - 1
    inside = (np.abs(sample) < 0.99).all(-1)  # the PNG clamps to [-1, 1]; elsewhere only 8-bit rounding
    assert inside.any() and np.abs(luma - target)[inside].max() < 0.01


def test_bad_inputs_give_one_line_errors(digits_run, tmp_path, capsys, user_error):
    image = _digit_png(tmp_path)
    run, out = str(digits_run), str(tmp_path / "out")
    user_error(["restore", run, "--task", "inpaint", "--input", str(image), "--out", out], "--mask")
    grey_mask = _png(tmp_path / "grey.png", np.full((8, 8), 128))
    user_error(["restore", run, "--task", "inpaint", "--input", str(image), "--mask", str(grey_mask),
                         "--out", out], "grey.png", "not binary", "white (255) = fill in")
    small_mask = _png(tmp_path / "small.png", np.zeros((4, 4)))
    user_error(["restore", run, "--task", "inpaint", "--input", str(image), "--mask", str(small_mask),
                         "--out", out], "small.png", "mask size 4x4, expected 8x8")
    big = _png(tmp_path / "big.png", np.zeros((16, 16)))
    user_error(["restore", run, "--task", "deblur", "--input", str(big), "--out", out],
                "big.png", "size 16x16, expected 8x8")
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8)).save(cmyk)
    user_error(["restore", run, "--task", "deblur", "--input", str(cmyk), "--out", out],
                "cmyk.jpg", "unsupported image mode 'CMYK'")
    colour = _png(tmp_path / "colour.png", np.random.default_rng(0).integers(0, 255, (8, 8, 3)))
    user_error(["restore", run, "--task", "deblur", "--input", str(colour), "--out", out],
                "colour.png", "expected mode L")
    user_error(["restore", run, "--task", "colorize", "--input", str(image), "--out", out],
                "colorize needs an RGB run")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    user_error(["restore", run, "--task", "deblur", "--input", str(broken), "--out", out],
                "broken.png", "not a readable image")
    user_error(["restore", run, "--task", "sr", "--input", str(image), "--scale", "3", "--out", out],
                "--scale 3")
    binary = _png(tmp_path / "binary.png", np.eye(8) * 255)
    user_error(["restore", run, "--task", "inpaint", "--input", str(image), "--mask", str(binary),
                         "--method", "sr3", "--out", out], "'sr3' needs a super-resolution run")


def test_posterior_samples_are_batch_invariant():
    def prior(x, sigma, cond=None):  # exact denoiser of N(0, I)
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    mask = Mask((torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float())
    y = mask(torch.ones(1, 1, 4, 4))
    sigmas = torch.tensor([80.0, 10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    whole = posterior_samples(prior, mask, y, (1, 4, 4), sigmas, method="ddnm", seeds=range(4))
    parts = [posterior_samples(prior, mask, y, (1, 4, 4), sigmas, method="ddnm", seeds=s)
             for s in (range(0, 1), range(1, 4))]
    assert torch.equal(whole, torch.cat(parts))
    with pytest.raises(UnnoiseError, match="repaint"):
        posterior_samples(prior, None, y, (1, 4, 4), sigmas, method="repaint", seeds=[0])
