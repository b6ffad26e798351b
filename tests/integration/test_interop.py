"""diffusers folders sampled with unnoise: tiny random-weight models built with diffusers' own classes and
written with save_pretrained; our samplers on the same timesteps and starting noise must reproduce
diffusers' own scheduler loops and Stable Diffusion pipeline in float64.

diffusers holds alpha_bar and (for Euler) the sigmas in float32 and steps Euler in float32, so the
outputs agree to float32 rounding of the values' scale, not to float64's: the bound is 1e-5 of the
largest output magnitude (the random eps networks give x0 estimates in the hundreds).
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from unnoise.errors import UnnoiseError  # noqa: E402
from unnoise.grids import sigma_grid  # noqa: E402
from unnoise.guide import cfg  # noqa: E402
from unnoise.interop import is_diffusers_folder  # noqa: E402
from unnoise.interop.folder import load_diffusers  # noqa: E402
from unnoise.interop.tiny import write_pixel_folder, write_sd_folder  # noqa: E402
from unnoise.sample import ddim, euler  # noqa: E402

RELATIVE = 1e-5
STEPS = 10


def assert_matches(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    scale = max(1.0, float(theirs.abs().max()))
    error = float((ours - theirs).abs().max())
    assert error <= RELATIVE * scale, f"{what}: max |ours - diffusers| = {error:.3g} at scale {scale:.3g}"


def starting_noise(shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_process_holds_the_schedulers_alpha_bar(schedule, zero_snr, assert_close_eps):
    """Our process of a scheduler config has diffusers' float32 alpha_bar (with zero-SNR rescaling, the
    top one floored at 2^-24 as EulerDiscreteScheduler does)."""
    from diffusers import EulerDiscreteScheduler

    from unnoise.interop.schedule import process_from_scheduler

    scheduler = EulerDiscreteScheduler(beta_schedule=schedule, rescale_betas_zero_snr=zero_snr)
    process = process_from_scheduler(dict(scheduler.config))
    assert_close_eps(process.alpha_bar, scheduler.alphas_cumprod, ulps=4, scale=1.0, what=f"{schedule}: ")
    assert process.sigma_max == pytest.approx(float(scheduler.sigmas[0]), rel=1e-6)


@pytest.fixture(scope="module")
def pixel_folders(tmp_path_factory):
    """{(prediction, zero_snr): folder} of DDIMPipeline folders with one tiny UNet2DModel each."""
    root = tmp_path_factory.mktemp("pixel")
    cases = [("epsilon", False), ("epsilon", True), ("v_prediction", False), ("v_prediction", True)]
    return {case: write_pixel_folder(root / f"{case[0]}-{case[1]}", *case) for case in cases}


def diffusers_unet(folder):
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True).double().eval()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("zero_snr", [False, True])
@torch.no_grad()
def test_ddim_equals_diffusers_ddim_scheduler(pixel_folders, prediction, zero_snr):
    """DDIM (eta 0) from x_T on the scheduler's own timesteps: diffusers works in process coordinates
    x_p, we in VE coordinates x = x_p sqrt(1 + sigma^2); both end at x0."""
    from diffusers import DDIMScheduler

    folder = pixel_folders[(prediction, zero_snr)]
    unet, scheduler = diffusers_unet(folder), DDIMScheduler.from_pretrained(folder / "scheduler")
    scheduler.set_timesteps(STEPS)
    z = starting_noise((2, 3, 8, 8))
    x = z.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    model = load_diffusers(folder, dtype=torch.float64)
    sigmas = with_zero(model.denoiser.process.sigmas[scheduler.timesteps])
    ours = ddim(model.denoiser, z * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    assert_matches(ours, x, f"DDIM {prediction} zero_snr={zero_snr}")


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("zero_snr", [False, True])
@torch.no_grad()
def test_euler_karras_equals_diffusers_euler_scheduler(pixel_folders, prediction, zero_snr):
    """Our Euler on our Karras grid of the folder's process vs EulerDiscreteScheduler with Karras sigmas
    (timestep_spacing linspace: its sigma range is the whole chain's, as ours), from the same x_T."""
    from diffusers import EulerDiscreteScheduler

    folder = pixel_folders[(prediction, zero_snr)]
    unet = diffusers_unet(folder)
    scheduler = EulerDiscreteScheduler.from_pretrained(folder / "scheduler", use_karras_sigmas=True,
                                                       timestep_spacing="linspace")
    scheduler.set_timesteps(STEPS)
    z = starting_noise((2, 3, 8, 8), seed=2)
    x = z * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(unet(scheduler.scale_model_input(x, t), t).sample, t, x).prev_sample
    model = load_diffusers(folder, dtype=torch.float64)
    sigmas = sigma_grid("karras", model.denoiser.process, STEPS)
    assert_matches(sigmas[:-1], scheduler.sigmas[:-1].double(), "Karras grid")
    ours = euler(model.denoiser, z * sigmas[0], sigmas)
    assert_matches(ours, x, f"Euler {prediction} zero_snr={zero_snr}")


def test_timesteps_follow_the_scheduler(pixel_folders, assert_close_eps):
    """Integer steps map to themselves; Karras sigmas to the fractional timesteps diffusers computes (to
    float32 rounding: both round a float64 timestep to float32)."""
    from diffusers import EulerDiscreteScheduler

    folder = pixel_folders[("epsilon", False)]
    process = load_diffusers(folder, dtype=torch.float64).denoiser.process
    steps = torch.tensor([0, 1, 500, 998, 999])
    assert torch.equal(process.t_of_sigma(process.sigmas[steps]), steps.double())
    scheduler = EulerDiscreteScheduler.from_pretrained(folder / "scheduler", use_karras_sigmas=True,
                                                       timestep_spacing="linspace")
    scheduler.set_timesteps(STEPS)
    ours = process.t_of_sigma(sigma_grid("karras", process, STEPS)[:-1]).float()
    assert_close_eps(ours, scheduler.timesteps, ulps=2, what="timesteps: ")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_sd_folder(tmp_path_factory.mktemp("sd") / "tiny-sd")


@torch.no_grad()
def test_cfg_equals_stable_diffusion_guidance(sd_folder):
    """Our CFG at scale w (on x0, one batched call) with DDIM equals StableDiffusionPipeline at
    guidance_scale w from the same latents; the decoded images agree too."""
    from diffusers import StableDiffusionPipeline

    scale, prompt = 3.0, "a red cat"
    reference = StableDiffusionPipeline.from_pretrained(sd_folder, dtype=torch.float64, safety_checker=None,
                                                        local_files_only=True)
    reference.set_progress_bar_config(disable=True)
    z = starting_noise((2, 4, 8, 8), seed=3)
    theirs = reference(prompt, num_inference_steps=8, guidance_scale=scale, latents=z.clone(),
                       num_images_per_prompt=2, output_type="latent").images
    model = load_diffusers(sd_folder, dtype=torch.float64)
    sigmas = with_zero(model.denoiser.process.sigmas[reference.scheduler.timesteps])
    cond = model.conditions.from_request({"prompt": prompt}, 2)
    x_T = z * (1 + sigmas[0] ** 2).sqrt()
    ours = ddim(cfg(model.denoiser, scale, model.conditions.null), x_T, sigmas, cond=cond)
    assert_matches(ours, theirs, f"CFG w={scale}")
    unguided = ddim(cfg(model.denoiser, 1.0, model.conditions.null), x_T, sigmas, cond=cond)
    assert float((unguided - theirs).abs().max()) > 1e3 * RELATIVE * float(theirs.abs().max())  # w matters
    image = reference.vae.decode(theirs / reference.vae.config.scaling_factor).sample
    assert_matches(model.codec.decode(ours), image, "decoded image")
    assert model.data_shape == (3, 16, 16) and model.latent_shape == (4, 8, 8)


def test_pipeline_and_cli_sample_a_folder(sd_folder, tmp_path):
    """`unnoise sample FOLDER --prompt ...` and Pipeline.load take a diffusers folder; seeds reproduce."""
    from unnoise.cli.main import main
    from unnoise.pipeline import Pipeline, SampleRequest

    assert is_diffusers_folder(sd_folder) and not is_diffusers_folder(tmp_path)
    pipe = Pipeline.load(sd_folder, device="cpu")
    request = SampleRequest(n=2, seed=5, prompt="a dog", sampler="euler", nfe=4, guidance=2.0)
    first, again = pipe.sample(request), pipe.sample(SampleRequest(**{**request.__dict__, "batch_size": 1}))
    assert first.shape == (2, 3, 16, 16) and torch.isfinite(first).all()
    torch.testing.assert_close(first, again, rtol=0, atol=1e-5)
    out = tmp_path / "x.png"
    assert main(["sample", str(sd_folder), "--prompt", "a red cat", "--n", "2", "--nfe", "3", "--sampler",
                 "dpmpp_2m", "--out", str(out), "--device", "cpu"]) in (0, None)
    assert out.is_file()


def test_folder_errors_name_what_is_missing(sd_folder, tmp_path, user_error):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sd_folder, broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(UnnoiseError, match=r"missing text_encoder/config.json"):
        load_diffusers(broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(UnnoiseError, match=r"missing unet/diffusion_pytorch_model.safetensors \(only safetensors"):
        load_diffusers(broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    shutil.copytree(sd_folder / "text_encoder", broken / "text_encoder")
    with pytest.raises(UnnoiseError, match=r"unet: cannot be loaded"):
        load_diffusers(broken)
    bad = tmp_path / "bad-schedule"
    shutil.copytree(sd_folder, bad)
    (bad / "scheduler" / "scheduler_config.json").write_text('{"beta_schedule": "quadratic"}')
    with pytest.raises(UnnoiseError, match=r"beta_schedule 'quadratic'"):
        load_diffusers(bad)
    user_error(["sample", str(bad), "--n", "1"], "beta_schedule 'quadratic'")


def test_stable_diffusion_inpainting_through_latent_inpainting(sd_folder):
    """Pipeline.restore on a Stable Diffusion folder: latent inpainting keeps the known pixels exactly."""
    from unnoise.pipeline import Pipeline, RestoreRequest
    from unnoise.restore.operators import Mask

    pipe = Pipeline.load(sd_folder, device="cpu")
    y = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(4)) * 2 - 1
    keep = torch.ones((1, 1, 16, 16), dtype=torch.uint8)
    keep[..., 4:12, 4:12] = 0
    out = pipe.restore(RestoreRequest(y=y, operator=Mask(keep), n=2, steps=4)).samples
    known = keep.bool().expand_as(out)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    assert torch.equal(out[known], y.expand_as(out)[known])
    assert not torch.equal(out[~known], y.expand_as(out)[~known])


def test_eval_scores_a_folder_against_a_reference_folder(sd_folder, tmp_path, user_error):
    """`unnoise eval FOLDER --reference DIR`: FD/KID of the folder's samples (with --prompt) against the
    images in DIR, exactly as scoring the same seeds' samples by hand; without DIR, or with --nll, a
    one-line error."""
    import json

    import numpy as np
    from PIL import Image

    from unnoise.cli.main import main
    from unnoise.eval.extractor import Extractor
    from unnoise.eval.features import EXTRACTORS, register_extractor
    from unnoise.eval.metrics import fd
    from unnoise.pipeline import Pipeline, SampleRequest

    reference = tmp_path / "real"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(reference / f"{i}.png")
    pooled = lambda x: torch.nn.functional.avg_pool2d(x.double(), 4).flatten(1)  # noqa: E731  (N, 3*4*4)
    register_extractor("test-pooled", lambda: Extractor("test-pooled", pooled, None, None, {}))
    try:
        out = tmp_path / "eval.json"
        argv = ["eval", str(sd_folder), "--n", "4", "--sampler", "euler", "--nfe", "3", "--prompt", "a red cat",
                "--extractor", "test-pooled", "--device", "cpu"]
        user_error(argv, "is a diffusers folder, which holds no data", "--reference DIR")
        user_error(["eval", str(sd_folder), "--nll"], "--nll", "diffusers folder")
        assert main([*argv, "--reference", str(reference), "--out", str(out)]) in (0, None)
    finally:
        EXTRACTORS.pop("test-pooled")
    result = json.loads(out.read_text())
    protocol = result["protocol"]
    assert protocol["reference"]["imagefolder"] == str(reference) and protocol["reference"]["n"] == 6
    assert protocol["prompt"] == "a red cat" and protocol["sampler"] == "euler" and protocol["nfe"] == 3
    pipe = Pipeline.load(sd_folder, device="cpu")
    fake = pipe.sample(SampleRequest(n=4, seed=0, prompt="a red cat", sampler="euler", nfe=3))
    from unnoise.data.imagefolder import load_imagefolder

    real = load_imagefolder(str(reference), size=16, mode="rgb", min_size=0).x
    expected = fd(pooled(real), pooled(fake))
    assert abs(result["scores"]["fd"] - expected) <= 1e-6 * max(1.0, expected)
