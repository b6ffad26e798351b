"""The fitted multistep solver (sample/fitted.py) against exact answers: the recorded trajectory, the
fit's prior, exactness where the ODE's solution lies in the fitted span, generalisation to fresh noise,
batch invariance, the saved form, and how `auto` uses it."""
import functools
import math

import pytest
import torch

from unnoise.exact import GaussianMixture, random_mixture, reference_ode_solution, ring
from unnoise.grids import karras, log_snr_uniform
from unnoise.process import make_process
from unnoise.sample import ddim, generate, multistep
from unnoise.sample.auto.budget import START_MARGIN, calibrate_auto
from unnoise.sample.plan import plan_sampling
from unnoise.sample.auto.calibrate import calibration_batch
from unnoise.sample.auto.fitted import FittedSteps, fit_steps, fitted_multistep, record_trajectory

SIGMA_MAX = 80.0
REFERENCE = functools.partial(multistep, order=3, corrector=True)


def _noise(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * SIGMA_MAX


def _exact(gm, x, steps=800):
    end = reference_ode_solution(gm, x, SIGMA_MAX, 1e-4, steps)
    return gm(end, torch.full((x.shape[0],), 1e-4, dtype=torch.float64))


def _rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def _uniform(n):
    return torch.full((n,), 1.0 / n, dtype=torch.float64)


def test_recorded_trajectory_interpolates_the_ode_between_nodes():
    gm = ring(std=0.1)
    x = _noise(64, 2, 0)
    trajectory = record_trajectory(gm, x, log_snr_uniform(256, 1e-5, SIGMA_MAX), REFERENCE)
    for node in (10, 60, 120, 200):  # halfway between two nodes, where the interpolant is least accurate
        sigma = math.exp(-0.5 * float(trajectory.lambdas[node] + trajectory.lambdas[node + 1]))
        direct = reference_ode_solution(gm, x, SIGMA_MAX, sigma, 4000)
        assert _rms(trajectory.at(sigma), direct) < 1e-5, sigma  # few-step solvers err by 1e-4 and more
    torch.testing.assert_close(trajectory.at(SIGMA_MAX), x, rtol=1e-12, atol=1e-10)


def test_isotropic_gaussian_is_solved_exactly_in_two_steps():
    """For N(0, s^2 I) every state is a multiple of x_0, so the fit recovers the exact solution
    x(0) = s x_0 / sqrt(s^2 + sigma_max^2) on any grid, where DPM-Solver++(2M) errs visibly."""
    s = 0.7
    gm = GaussianMixture(torch.zeros(1, 3), (s**2 * torch.eye(3))[None])
    x = _noise(32, 3, 1)
    exact = s * x / math.sqrt(s**2 + SIGMA_MAX**2)
    grid = karras(2, 0.01, SIGMA_MAX)
    trajectory = record_trajectory(gm, x, log_snr_uniform(256, 1e-5, SIGMA_MAX), REFERENCE)
    steps, out = fit_steps(gm, x, grid, trajectory.at, _uniform(32))
    assert _rms(out, exact) < 1e-6 * _rms(exact, 0 * exact)
    fresh = _noise(16, 3, 2)
    assert _rms(fitted_multistep(gm, fresh, grid, steps=steps), s * fresh / math.sqrt(s**2 + SIGMA_MAX**2)) < 1e-6
    assert _rms(multistep(gm, x.clone(), grid, order=2, corrector=False), exact) > 1e-3


def test_an_overwhelming_ridge_gives_the_first_order_exponential_integrator():
    """The fit's prior is DDIM / first-order DPM-Solver++ on the same grid."""
    gm = ring(std=0.1)
    x = _noise(16, 2, 3)
    grid = karras(6, 0.01, SIGMA_MAX)
    trajectory = record_trajectory(gm, x, log_snr_uniform(64, 1e-4, SIGMA_MAX), REFERENCE)
    _, out = fit_steps(gm, x, grid, trajectory.at, _uniform(16), ridge=1e12)
    torch.testing.assert_close(out, ddim(gm, x.clone(), grid), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("start", [False, True])
def test_fitted_weights_beat_dpm_solver_on_fresh_noise(start):
    """Fitted on 512 calibration trajectories of a 16-D mixture, applied to noise it never saw: at the same
    five model calls it is more accurate than DPM-Solver++(2M) and (3M) on the same grid."""
    gm = random_mixture(16, 4, seed=3)
    cal = calibration_batch(gm, (16,), 5, SIGMA_MAX, 0.01, reference_solver=REFERENCE, batch=512, pool_factor=1)
    steps = 6 if start else 5
    grid = log_snr_uniform(steps, 0.01, SIGMA_MAX)
    first = None
    if start:
        first = (gm(cal.x, torch.full((512,), SIGMA_MAX, dtype=torch.float64)) * cal.weights[:, None]).sum(0)
    fitted, _ = fit_steps(gm, cal.x.clone(), grid, cal.trajectory.at, cal.weights, start=first)
    assert fitted.model_calls == 5
    x = _noise(1000, 16, 4)
    exact = _exact(gm, x)
    gm.calls = 0
    error = _rms(fitted_multistep(gm, x.clone(), grid, steps=fitted), exact)
    assert gm.calls == 5
    baseline = log_snr_uniform(5, 0.01, SIGMA_MAX)
    for order in (2, 3):
        assert error < 0.7 * _rms(multistep(gm, x.clone(), baseline, order=order, corrector=False), exact)


def test_batch_of_8_equals_8_single_runs_and_saved_form_round_trips():
    gm = ring(std=0.1)
    x = _noise(64, 2, 5)
    grid = karras(5, 0.01, SIGMA_MAX)
    trajectory = record_trajectory(gm, x, log_snr_uniform(64, 1e-4, SIGMA_MAX), REFERENCE)
    fitted, _ = fit_steps(gm, x, grid, trajectory.at, _uniform(64), start=torch.tensor([0.1, -0.2]))
    fn = functools.partial(fitted_multistep, steps=FittedSteps.from_dict(fitted.to_dict()))
    batch = generate(gm, (2,), grid, fn, seeds=range(40, 48))
    singles = torch.cat([generate(gm, (2,), grid, fn, seeds=[40 + i]) for i in range(8)])
    assert torch.equal(batch, singles)
    assert torch.equal(batch, generate(gm, (2,), grid, functools.partial(fitted_multistep, steps=fitted),
                                       seeds=range(40, 48)))
    with pytest.raises(ValueError, match="fitted on the grid"):
        fitted_multistep(gm, x, karras(5, 0.02, SIGMA_MAX), steps=fitted)


def test_auto_keeps_to_its_budget_and_drops_the_constant_start_for_conditional_models():
    gm = ring(std=0.05)
    p = make_process("ddpm")
    choice = calibrate_auto(gm, p, 4, (2,), batch=64, sweeps=1, pool_factor=2)
    errors = choice.candidates
    assert set(errors) == {"pc2", "pc3", "pc2_midpoint", "pc3_midpoint", "fitted", "fitted_start"}
    assert choice.calibration.error == errors[choice.name]
    every_call = min(e for name, e in errors.items() if name != "fitted_start")
    if choice.name == "fitted_start":
        assert errors["fitted_start"] < START_MARGIN * every_call
    else:
        assert errors[choice.name] == every_call and errors["fitted_start"] >= START_MARGIN * every_call
    conditional = calibrate_auto(gm, p, 4, (2,), batch=64, sweeps=1, pool_factor=2, unconditional=False)
    assert "fitted_start" not in conditional.candidates
    x = _noise(8, 2, 6) * p.sigma_max / SIGMA_MAX
    plan = plan_sampling("auto", gm, p, (2,), nfe=4)
    gm.calls = 0
    assert torch.isfinite(plan.function(gm, x, plan.sigmas)).all()
    assert gm.calls == 4 and plan.nfe == 4
