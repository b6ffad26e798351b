"""unnoise's samplers on a diffusers Stable Diffusion folder: accuracy at a budget of model calls, and
per-step overhead against diffusers' own pipeline.

The folder is a tiny random-weight Stable Diffusion (unnoise.interop.tiny.write_sd_folder: UNet2DCondition
on 4 x S x S latents, AutoencoderKL, 2-layer CLIP text model, scaled_linear DDPM chain, epsilon prediction),
written with diffusers' save_pretrained and read back through `unnoise.interop.folder`, as
`unnoise sample FOLDER` reads it.

Accuracy: one prompt, classifier-free guidance w = 7.5, n samples from seeded noise z; every method starts
from the same state, the VP state x_T = z at the chain's top step (the VE state z sqrt(1 + sigma_max^2)),
and its output latents are compared with a converged solve of the same guided probability-flow ODE (our
Heun on a Karras grid with REFERENCE_STEPS steps; "reference_check" is its RMS distance to a run with half
the steps). Error = RMS per latent coordinate. Rows: our `auto` (calibrated as it ships, `--nfe N`), our
dpmpp_2m, and diffusers' schedulers inside StableDiffusionPipeline (latents passed in, output_type
"latent"): ddim (trailing spacing), euler_karras, heun_karras (2 calls per step, one fewer on the last),
dpmpp_2m, dpmpp_2m_karras, unipc. "ratio" = auto's error / the best diffusers scheduler's at that NFE.

Overhead: float32, batch n, prompt + guidance, decoded images out. Our Pipeline.sample (dpmpp_2m) and
StableDiffusionPipeline (DPMSolverMultistepScheduler) at NFE 5 and 20; the per-step time is
(t(20) - t(5)) / 15 (text encoding and decoding cancel), the minimum over repeats of each. Target (issue):
ours <= 1.05x theirs per step.

    python benchmarks/interop.py [--json] [--quick]

--quick: latents 4 x 24 x 24, 4 samples, NFE 5 and 10, 60 reference steps, 2 timing repeats (minutes on 2
busy cores); the full run: NFE 5, 10, 20, 16 samples, 200 reference steps, 5 repeats.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PROMPT, GUIDANCE = "a red cat", 7.5
SIZE = 24  # latent side: 4 x 24 x 24 = 2304 values, past 1024, so auto calibrates as it does for real SD latents
# name: (scheduler class, options, model calls per step, calls saved on the last step)
DIFFUSERS = {
    "ddim": ("DDIMScheduler", {"timestep_spacing": "trailing"}, 1, 0),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True, "timestep_spacing": "linspace"}, 1, 0),
    "heun_karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True, "timestep_spacing": "linspace"}, 2, 1),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "final_sigmas_type": "zero", "timestep_spacing": "linspace"}, 1, 0),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "final_sigmas_type": "zero", "use_karras_sigmas": True,
                                                        "timestep_spacing": "linspace"}, 1, 0),
    "unipc": ("UniPCMultistepScheduler", {"final_sigmas_type": "zero", "timestep_spacing": "linspace"}, 1, 0),
}


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


def diffusers_reference(folder: Path, dtype):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, safety_checker=None, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_scheduler(pipe, name: str):
    """pipe with scheduler `name`, built from the folder's own scheduler config (kept on the pipe, so no
    option of an earlier scheduler, e.g. use_karras_sigmas, carries over)."""
    import diffusers

    cls, options, _, _ = DIFFUSERS[name]
    if not hasattr(pipe, "folder_scheduler_config"):
        pipe.folder_scheduler_config = pipe.scheduler.config
    pipe.scheduler = getattr(diffusers, cls).from_config(pipe.folder_scheduler_config, **options)
    return pipe


def steps_for(name: str, nfe: int) -> int:
    _, _, per_step, saved = DIFFUSERS[name]
    return (nfe + saved) // per_step


@torch.no_grad()
def run_diffusers(pipe, name: str, nfe: int, z: torch.Tensor, sigma_max: float) -> tuple[torch.Tensor, int]:
    """Latents from VP state x_T = z: a sigma-space scheduler (init_noise_sigma > 1) starts from
    latents * init_noise_sigma in VE coordinates, so it gets z sqrt(1 + sigma_max^2) / init_noise_sigma."""
    with_scheduler(pipe, name)
    steps = steps_for(name, nfe)
    pipe.scheduler.set_timesteps(steps)
    init = float(pipe.scheduler.init_noise_sigma)
    latents = z * (1 + sigma_max**2) ** 0.5 / init if init > 1 else z
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    out = pipe([PROMPT] * len(z), num_inference_steps=steps, guidance_scale=GUIDANCE, latents=latents.clone(),
               output_type="latent").images
    hook.remove()
    return out, len(calls)


def accuracy(folder: Path, quick: bool) -> dict:
    from unnoise.grids import sigma_grid
    from unnoise.pipeline import Pipeline, SampleRequest
    from unnoise.sample import heun

    n, nfes, reference_steps = (4, (5, 10), 60) if quick else (16, (5, 10, 20), 200)
    pipe = Pipeline.load(folder, "cpu")
    process = pipe.process
    sigma_max = process.sigma_max
    z = torch.randn((n, *pipe.shape), generator=torch.Generator().manual_seed(0))
    x_T = z * (1 + sigma_max**2) ** 0.5
    request = SampleRequest(n=n, prompt=PROMPT, guidance=GUIDANCE)
    guided, cond = pipe.guided(request), pipe.condition(request, n)
    x_T64 = x_T.double()
    pipe.denoiser.double()
    reference = heun(guided, x_T64, sigma_grid("karras", process, reference_steps), cond=_double(cond))
    half = heun(guided, x_T64, sigma_grid("karras", process, reference_steps // 2), cond=_double(cond))
    pipe.denoiser.float()
    rows: dict = {}
    for nfe in nfes:
        row = {}
        for name in ("auto", "dpmpp_2m"):
            started = time.perf_counter()
            plan = pipe.plan(SampleRequest(sampler=name, nfe=nfe, prompt=PROMPT, guidance=GUIDANCE), guided)
            x = plan.function(guided, x_T, plan.sigmas, cond=cond)  # plan.sigmas[0] = sigma_max
            row[f"ours_{name}"] = {"error": rms(x, reference), "nfe": plan.nfe, "choice": plan.choice,
                                   "start_sigma": round(plan.sigmas[0].item(), 4),
                                   "seconds": round(time.perf_counter() - started, 2)}
        theirs = diffusers_reference(folder, torch.float32)
        for name in DIFFUSERS:
            out, calls = run_diffusers(theirs, name, nfe, z, sigma_max)
            row[f"diffusers_{name}"] = {"error": rms(out, reference), "nfe": calls}  # CFG: one call on 2n rows
        best = min(v["error"] for k, v in row.items() if k.startswith("diffusers_"))
        row["ratio_auto_to_best_diffusers"] = row["ours_auto"]["error"] / best
        rows[str(nfe)] = row
    return {"samples": n, "latent_shape": list(pipe.shape), "reference_steps": reference_steps,
            "reference_check": rms(half, reference), "reference_scale": float(reference.double().pow(2).mean().sqrt()),
            "nfe": rows}


def _double(cond):
    from unnoise.conditions import map_part

    return map_part(cond, lambda part: part.double() if part.is_floating_point() else part)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def overhead(folder: Path, quick: bool) -> dict:
    from unnoise.pipeline import Pipeline, SampleRequest

    n, repeats = (4, 2) if quick else (8, 5)
    ours, theirs = Pipeline.load(folder, "cpu"), with_scheduler(diffusers_reference(folder, torch.float32),
                                                                      "dpmpp_2m")
    seconds = {}
    for nfe in (5, 20):
        request = SampleRequest(n=n, prompt=PROMPT, guidance=GUIDANCE, sampler="dpmpp_2m", nfe=nfe, batch_size=n)
        seconds[f"ours_{nfe}"] = best_time(lambda: ours.sample(request), repeats)
        generator = torch.Generator().manual_seed(0)
        seconds[f"diffusers_{nfe}"] = best_time(
            lambda: theirs([PROMPT] * n, num_inference_steps=nfe, guidance_scale=GUIDANCE, generator=generator,
                           output_type="pt"), repeats)
    ours_step = (seconds["ours_20"] - seconds["ours_5"]) / 15
    theirs_step = (seconds["diffusers_20"] - seconds["diffusers_5"]) / 15
    return {"samples": n, "repeats": repeats, "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "per_step_ms_ours": round(1e3 * ours_step, 3), "per_step_ms_diffusers": round(1e3 * theirs_step, 3),
            "per_step_ratio": round(ours_step / theirs_step, 3), "target": 1.05}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer samples, NFE 5 and 10")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    from unnoise.interop.tiny import write_sd_folder

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sd_folder(Path(tmp) / "tiny-sd", size=SIZE)
        result = {"quick": args.quick, "accuracy": accuracy(folder, args.quick),
                  "overhead": overhead(folder, args.quick)}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
