"""Sampler accuracy at a fixed budget of model calls, on Gaussian mixtures whose denoiser is exact.

Two cases, both under the DDPM linear schedule (beta 1e-4 .. 0.02, 1000 steps, epsilon prediction):
  ring   a 2-D ring of 8 sharp modes (radius 1.5, std 0.03), 1,000 samples;
  gmm32  a 32-D mixture of 8 components, `random_mixture(32, 8, seed=0, decay=1.0, scale=1.0)`:
         power-law covariance spectrum lambda_i = 0.25 i^-1 (i = 1..32) under a random rotation per
         component, means ~ N(0, I), random weights; 4,000 samples (a sample that ends in another mode
         than the reference adds ~0.02 to the RMS at this size; at 500 samples it added ~0.05 and one
         sample decided the comparison).
  gmm32_seed1  the same recipe with mixture seed 1, a mixture nothing was developed on; 2,000 samples.
Every method starts from the same seeded noise z (float64): the VP state x_T = z at t = 999, i.e. the VE
state z * sqrt(1 + sigma_max^2). The reference is the probability-flow ODE solved to convergence (RK4 in
log-sigma from sigma_max down to 1e-5, 1000 steps, then the exact denoiser there); "reference_check" is
its RMS distance to a run with half the steps (RK4: the reference's own error is ~1/16 of that). Error =
RMS per coordinate between a method's output and the reference, sqrt(mean((x - x_ref)^2)). NFE = denoiser
calls actually made while sampling. "mode_flips" counts outputs whose nearest mixture mean differs from the
reference's: one flipped sample in 4,000 adds ~0.02 (gmm32) to the RMS, so read the errors with it.

Rows: every deterministic sampler of ours (`unnoise.sample.DETERMINISTIC`, run through
`unnoise.sample.plan.plan_sampling` as `unnoise sample --nfe N` runs them; `auto` calibrated as it ships) and these diffusers
schedulers, driven by an exact epsilon "network" eps(x_vp, t) = (x_ve - D(x_ve, sigma(t))) / sigma(t),
x_ve = x_vp sqrt(1 + sigma(t)^2), sigma(t) interpolated linearly in log-sigma for fractional t:
  ddim (trailing spacing, no clipping), euler_karras, heun_karras, dpmpp_2m, dpmpp_2m_karras, dpmpp_3m,
  unipc, unipc_karras, deis.
Target (issue): our default sampler's error <= 0.5x the best diffusers scheduler's at NFE 5, 10 and 20.

    python benchmarks/sampler_accuracy.py [--json] [--cases ring,gmm32] [--nfe 5,10,20] [--quick]

Needs the bench extra (diffusers, scipy): pip install -e '.[bench]'.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path

import torch

try:
    import unnoise  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

NFES = (5, 8, 10, 15, 20, 50)
TARGET_NFES = (5, 10, 20)
TARGET_RATIO = 0.5
SIGMA_END = 1e-5  # the reference ODE stops here and finishes with the exact denoiser
REFERENCE_STEPS = 1000  # RK4 steps of the reference; a run with half as many measures its convergence
MIXTURE32 = {"dim": 32, "n_components": 8, "seed": 0, "decay": 1.0, "scale": 1.0}
MIXTURES = {"gmm32": MIXTURE32, "gmm32_seed1": {**MIXTURE32, "seed": 1}}
CASES = {
    # name: (samples, samples with --quick, noise seed)
    "ring": (1000, 200, 1),
    "gmm32": (4000, 200, 2),
    "gmm32_seed1": (2000, 200, 3),
}


def build_mixture(case: str):
    from unnoise.exact import random_mixture, ring

    if case == "ring":
        return ring(n_modes=8, radius=1.5, std=0.03)
    if case in MIXTURES:
        return random_mixture(**MIXTURES[case])
    raise SystemExit(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.to(torch.float64) - b.to(torch.float64)) ** 2).mean().sqrt())


def nearest_mode(gm, x: torch.Tensor) -> torch.Tensor:
    """Index of the nearest component mean (the modes are far apart relative to their widths)."""
    return torch.cdist(x.to(torch.float64), gm.means).argmin(1)


class Counted:
    """The exact denoiser D(x, sigma, cond) with a call counter."""

    def __init__(self, gm):
        self.gm = gm
        self.calls = 0

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.gm.posterior_mean(x, sigma).to(x.dtype)


# ----------------------------------------------------------------------------- reference


def reference(gm, x_start: torch.Tensor, sigma_max: float, steps: int) -> torch.Tensor:
    from unnoise.exact import reference_ode_solution

    x = reference_ode_solution(gm.posterior_mean, x_start, sigma_max, SIGMA_END, steps)
    return gm.posterior_mean(x, torch.full((x.shape[0],), SIGMA_END, dtype=torch.float64))


# ----------------------------------------------------------------------------- ours


def run_ours(name: str, gm, x_start: torch.Tensor, nfe: int, process) -> tuple[torch.Tensor, int, int, str | None]:
    """(output, model calls while sampling, calls spent preparing (auto's calibration), and for `auto`
    the candidate it chose). Through `plan_sampling`, the path `unnoise sample` and the Pipeline take:
    the registered grid and budget of each sampler, and auto calibrated at the effort that ships."""
    from unnoise.sample.plan import plan_sampling

    counted = Counted(gm)
    plan = plan_sampling(name, counted, process, tuple(x_start.shape[1:]), nfe=nfe)
    prepare_calls, counted.calls = counted.calls, 0
    with torch.no_grad():
        out = plan.function(counted, x_start.clone(), plan.sigmas)
    return out, counted.calls, prepare_calls, plan.choice


# ----------------------------------------------------------------------------- diffusers

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
            "prediction_type": "epsilon", "thresholding": False, "clip_sample": False}
# name: (scheduler class, options, model calls per step, calls saved on the last step)
DIFFUSERS = {
    "ddim": ("DDIMScheduler", {"timestep_spacing": "trailing", "set_alpha_to_one": True}, 1, 0),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True, "final_sigmas_type": "zero"}, 1, 0),
    "heun_karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, 2, 1),
    "dpmpp_2m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"}, 1, 0),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero",
                         "use_karras_sigmas": True}, 1, 0),
    "dpmpp_3m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 3, "final_sigmas_type": "zero"}, 1, 0),
    "unipc": ("UniPCMultistepScheduler", {"final_sigmas_type": "zero"}, 1, 0),
    "unipc_karras": ("UniPCMultistepScheduler", {"final_sigmas_type": "zero", "use_karras_sigmas": True}, 1, 0),
    # DEIS has no final_sigmas_type: it always stops at sigma(t=0) ~ 0.01 (see README)
    "deis": ("DEISMultistepScheduler", {}, 1, 0),
}


def import_diffusers():
    try:
        import diffusers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"diffusers is missing ({exc}); install the bench extra: pip install -e '.[bench]'")
    return diffusers


def make_scheduler(name: str):
    diffusers = import_diffusers()
    cls_name, options, _, _ = DIFFUSERS[name]
    cls = getattr(diffusers, cls_name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in SCHEDULE.items() if k in accepted}
    missing = [k for k in options if k not in accepted]
    if missing:
        raise SystemExit(f"{cls_name} in diffusers {diffusers.__version__} has no option {missing}")
    return cls(**kwargs, **options)


def steps_for(name: str, nfe: int) -> int:
    _, _, per_step, saved = DIFFUSERS[name]
    return max(1, (nfe + saved) // per_step)


def epsilon_model(gm, process):
    """An exact epsilon-prediction network of the DDPM process: eps(x_vp, t), t possibly fractional."""
    state = {"calls": 0}

    def model(sample: torch.Tensor, t) -> torch.Tensor:
        state["calls"] += 1
        sigma = float(process.sigma(torch.as_tensor(t, dtype=torch.float64)))
        x_ve = sample.to(torch.float64) * math.sqrt(1.0 + sigma * sigma)
        x0 = gm.posterior_mean(x_ve, torch.full((x_ve.shape[0],), sigma, dtype=torch.float64))
        return ((x_ve - x0) / sigma).to(sample.dtype)

    return model, state


def final_sigma_of(scheduler, process) -> float:
    """The noise level the scheduler's last step lands on (0 = a clean sample)."""
    if hasattr(scheduler, "sigmas"):
        return float(scheduler.sigmas[-1])
    # DDIM: the last step goes to t - T // N, or to alpha_bar = 1 (with set_alpha_to_one) when negative
    prev = int(scheduler.timesteps[-1]) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    if prev < 0:
        return 0.0 if scheduler.config.set_alpha_to_one else float(process.sigmas[0])
    return float(process.sigmas[prev])


def run_diffusers(name: str, gm, z: torch.Tensor, nfe: int, process) -> tuple[torch.Tensor, int, float]:
    """Sample with diffusers' scheduler `name` from VP noise z within `nfe` model calls: (output, model
    calls, the sigma the output is at). The output is used as diffusers returns it."""
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(steps_for(name, nfe))
    model, state = epsilon_model(gm, process)
    sample = z.clone() * scheduler.init_noise_sigma  # 1 for VP schedulers, sqrt(sigma_max^2 + 1) for Karras
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(sample, t), t)
            sample = scheduler.step(eps, t, sample).prev_sample
    return sample, state["calls"], final_sigma_of(scheduler, process)


# ----------------------------------------------------------------------------- driver


def run_case(case: str, nfes, n_samples: int, seed: int, ours_names, default: str, log) -> dict:
    from unnoise.process import make_process

    process = make_process("ddpm")
    sigma_max = process.sigma_max
    gm = build_mixture(case)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_samples, gm.dim, generator=g, dtype=torch.float64)  # VP x_T
    x_start = z * math.sqrt(1.0 + sigma_max**2)  # the same state in VE coordinates

    t0 = time.perf_counter()
    ref = reference(gm, x_start, sigma_max, REFERENCE_STEPS)
    check = rms(ref, reference(gm, x_start, sigma_max, REFERENCE_STEPS // 2))  # RK4: ref's own error ~ check/16
    log(f"[{case}] reference ({REFERENCE_STEPS} vs {REFERENCE_STEPS // 2} RK4 steps): diff {check:.2e}, "
        f"{time.perf_counter() - t0:.1f}s")
    ref_mode = nearest_mode(gm, ref)

    result = {"ours": {}, "diffusers": {}}
    nfe_actual = {"ours": {}, "diffusers": {}}
    flips = {"ours": {}, "diffusers": {}}
    final_sigma = {}
    prepare = {}
    choices = {}
    failed = {}
    for name in ours_names:
        row = {}
        for nfe in nfes:
            try:
                out, calls, prep, chosen = run_ours(name, gm, x_start, nfe, process)
            except Exception as exc:  # a sampler under development must not sink the whole table
                failed[f"ours/{name}"] = f"{type(exc).__name__}: {exc}"
                log(f"[{case}] ours {name} failed: {failed[f'ours/{name}']}")
                break
            row[str(nfe)] = rms(out, ref)
            if calls != nfe:
                nfe_actual["ours"].setdefault(name, {})[str(nfe)] = calls
            flipped = int((nearest_mode(gm, out) != ref_mode).sum())
            if flipped:
                flips["ours"].setdefault(name, {})[str(nfe)] = flipped
            if prep:
                prepare.setdefault(name, {})[str(nfe)] = prep
            if chosen:
                choices.setdefault(name, {})[str(nfe)] = chosen
        if row:
            result["ours"][name] = row
            log(f"[{case}] ours {name}: done")
    for name in DIFFUSERS:
        row = {}
        for nfe in nfes:
            out, calls, last_sigma = run_diffusers(name, gm, z, nfe, process)
            row[str(nfe)] = rms(out, ref)
            if calls != nfe:
                nfe_actual["diffusers"].setdefault(name, {})[str(nfe)] = calls
            if last_sigma != 0:
                final_sigma.setdefault(name, {})[str(nfe)] = round(last_sigma, 5)
            flipped = int((nearest_mode(gm, out) != ref_mode).sum())
            if flipped:
                flips["diffusers"].setdefault(name, {})[str(nfe)] = flipped
        result["diffusers"][name] = row
        log(f"[{case}] diffusers {name}: done")

    best = {}
    ratio = {}
    for nfe in map(str, nfes):
        name, err = min(((n, r[nfe]) for n, r in result["diffusers"].items()), key=lambda p: p[1])
        best[nfe] = [name, err]
        if default in result["ours"] and nfe in result["ours"][default]:
            ratio[nfe] = result["ours"][default][nfe] / err
    result["best_diffusers"] = best
    result["ratio_default_vs_best"] = ratio
    judged = [str(n) for n in TARGET_NFES if str(n) in ratio]
    result["targets_met"] = all(ratio[n] <= TARGET_RATIO for n in judged) if judged else None
    result["reference_check"] = check
    result["nfe_actual"] = {k: v for k, v in nfe_actual.items() if v}
    result["mode_flips"] = {k: v for k, v in flips.items() if v}
    if final_sigma:
        result["diffusers_final_sigma"] = final_sigma
    if prepare:
        result["prepare_calls"] = prepare
    if choices:
        result["auto_choice"] = choices
    budget_broken = {n: v for n, v in nfe_actual["ours"].items() if any(c > int(k) for k, c in v.items())}
    if budget_broken:
        result["budget_exceeded"] = budget_broken
    if failed:
        result["failed"] = failed
    result["setup"] = {"samples": n_samples, "noise_seed": seed, "dim": gm.dim, "sigma_max": sigma_max,
                       "reference": {"method": "rk4_log_sigma", "steps": REFERENCE_STEPS,
                                     "check_steps": REFERENCE_STEPS // 2, "sigma_end": SIGMA_END}}
    if case in MIXTURES:
        result["setup"]["mixture"] = MIXTURES[case]
    return result


def table(case: str, res: dict, nfes, default: str) -> str:
    cols = [str(n) for n in nfes]
    lines = [f"== {case}: RMS error per coordinate vs converged PF-ODE (reference check "
             f"{res['reference_check']:.1e})", f"{'':24s}" + "".join(f"{'NFE ' + c:>11s}" for c in cols)]
    for side in ("ours", "diffusers"):
        for name, row in res[side].items():
            mark = " *" if side == "ours" and name == default else ""
            label = f"{side[0]}:{name}{mark}"
            lines.append(f"{label:24s}" + "".join(f"{row[c]:11.2e}" if c in row else f"{'-':>11s}" for c in cols))
    lines.append(f"{'best diffusers':24s}" + "".join(f"{res['best_diffusers'][c][1]:11.2e}" for c in cols))
    lines.append(f"{'ratio default/best':24s}"
                 + "".join(f"{res['ratio_default_vs_best'][c]:11.2f}" if c in res["ratio_default_vs_best"]
                           else f"{'-':>11s}" for c in cols))
    lines.append("best diffusers per NFE: " + ", ".join(f"{c}: {res['best_diffusers'][c][0]}" for c in cols))
    if res.get("nfe_actual"):
        lines.append(f"actual NFE where it differs from the budget: {res['nfe_actual']}")
    if res.get("mode_flips"):
        lines.append(f"samples landing at another mode than the reference: {res['mode_flips']}")
    if res.get("diffusers_final_sigma"):
        lines.append(f"diffusers outputs not at sigma 0 (final sigma): {res['diffusers_final_sigma']}")
    if res.get("failed"):
        lines.append(f"failed: {res['failed']}")
    lines.append(f"target (default <= {TARGET_RATIO}x best at NFE 5/10/20): "
                 + {True: "met", False: "NOT met", None: "not measured"}[res["targets_met"]])
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--nfe", default=",".join(map(str, NFES)), help="comma-separated NFE budgets")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            parser.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    nfes = sorted({int(n) for n in args.nfe.split(",") if n.strip()})
    if not nfes or min(nfes) < 1:
        parser.error("--nfe needs positive integers")

    diffusers = import_diffusers()
    from unnoise.sample import DETERMINISTIC

    default = "auto"  # the most accurate at a budget: the one the target is about
    ours_names = [name for name in DETERMINISTIC if name != default] + [default]

    def log(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    out = {"cases": {}, "default_sampler": default}
    for case in cases:
        n_full, n_quick, seed = CASES[case]
        out["cases"][case] = run_case(case, nfes, n_quick if args.quick else n_full, seed, ours_names, default, log)
    out["targets_met"] = all(r["targets_met"] is not False for r in out["cases"].values())
    out["meta"] = {"diffusers": diffusers.__version__, "torch": torch.__version__, "threads": args.threads,
                   "quick": args.quick, "seconds": round(time.perf_counter() - t0, 1),
                   "target": f"default <= {TARGET_RATIO}x best diffusers at NFE {list(TARGET_NFES)}"}
    if not args.json:
        for case, res in out["cases"].items():
            print(table(case, res, nfes, default))
            print()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
