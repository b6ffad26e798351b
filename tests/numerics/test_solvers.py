"""Issue-3 samplers against exact answers: multistep orders, stochastic samplers' moments, Langevin,
batch invariance, the phi-function weights and the grid calibration."""
import functools
import math

import pytest
import torch

from unnoise.exact import GaussianMixture, random_mixture, reference_ode_solution, ring
from unnoise.grids import karras, log_snr_uniform
from unnoise.sample import (DETERMINISTIC, FIXED, SAMPLERS, STOCHASTIC, annealed_langevin, dpmpp_2m, dpmpp_3m,
                            generate, get_sampler, multistep, predictor_corrector)
from unnoise.sample.plan import run_budget
from unnoise.sample.auto.calibrate import calibrate, grid_from_params, params_from_grid
from unnoise.sample.multistep import exponential_weights, phi
from unnoise.process import make_process

SIGMA_MAX, SIGMA_MIN = 20.0, 0.05


@pytest.fixture(scope="module")
def problem():
    gm = random_mixture(8, 4, seed=1)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    return gm, x, reference_ode_solution(gm, x, SIGMA_MAX, SIGMA_MIN, 600)


def _rms(a, b):
    return (a - b).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("sampler,order", [
    (dpmpp_2m, 2), (dpmpp_3m, 3),
    (functools.partial(multistep, order=2), 3),  # corrector adds one order
    (functools.partial(multistep, order=3), 4),
])
def test_multistep_orders(problem, sampler, order):
    """Error ratio per doubling of steps on a log-SNR grid tends to 2^order (last doubling 64 -> 128)."""
    gm, x, ref = problem
    errors = [_rms(sampler(gm, x.clone(), log_snr_uniform(n, SIGMA_MIN, SIGMA_MAX)[:-1]), ref) for n in (32, 64, 128)]
    rate = math.log2(errors[1] / errors[2])
    assert order - 0.5 < rate < order + 1.0, errors
    assert errors[2] < errors[1] < errors[0]


def test_phi_matches_closed_form():
    for z in (-1e-4, -0.3, -0.999, -1.0, -2.5, -30.0):
        assert phi(1, z) == pytest.approx(math.expm1(z) / z, rel=1e-12)
        assert phi(2, z) == pytest.approx((math.expm1(z) - z) / z**2, rel=1e-9)
        assert phi(3, z) == pytest.approx((math.expm1(z) - z - z * z / 2) / z**3, rel=1e-6)


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_exponential_weights_integrate_polynomials(rate):
    """sum_j w_j p(u_j) equals integral_0^h rate e^{-rate (h-u)} p(u) du for p of degree < #nodes."""
    h, nodes = 0.7, [0.0, -0.5, -1.1, 0.7]
    weights = exponential_weights(nodes, h, rate)
    u = torch.linspace(0, h, 200001, dtype=torch.float64)
    for degree in range(len(nodes)):
        p = lambda v: (v - 0.2) ** degree  # noqa: E731
        f = rate * torch.exp(-rate * (h - u)) * p(u)
        integral = torch.trapezoid(f, u).item()
        assert sum(w * p(torch.tensor(n)).item() for w, n in zip(weights, nodes)) == pytest.approx(integral, rel=1e-6)


def _two_gaussians():
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.5, -0.5]]),
                           torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]]]), torch.tensor([0.3, 0.7]))


def _assert_moments(x, gm, cov_tol=0.05):
    x = x.double()
    n = len(x)
    se = (gm.covariance().diagonal() / n).sqrt()
    assert torch.all((x.mean(0) - gm.mean()).abs() < 4.5 * se), (x.mean(0), gm.mean())
    torch.testing.assert_close(torch.cov(x.T), gm.covariance(), atol=cov_tol, rtol=cov_tol)


@pytest.mark.parametrize("name,steps", [("euler_ancestral", 200), ("dpmpp_2m_sde", 100)])
def test_stochastic_samplers_match_mixture_moments(name, steps):
    gm = _two_gaussians()
    torch.manual_seed(1)
    x = torch.randn(8000, 2, dtype=torch.float64) * 80.0
    _assert_moments(get_sampler(name)(gm, x, karras(steps, 0.002, 80.0)), gm)


def _mode_weights(x, gm):
    d = torch.cdist(x.double(), gm.means)
    return torch.bincount(d.argmin(1), minlength=len(gm.means)).double() / len(x)


def test_predictor_corrector_langevin_moments_and_modes():
    gm = _two_gaussians()
    torch.manual_seed(2)
    x = torch.randn(6000, 2, dtype=torch.float64) * 80.0
    out = predictor_corrector(gm, x, karras(100, 0.002, 80.0), snr=0.16, corrector_steps=1)
    _assert_moments(out, gm)
    assert (_mode_weights(out, gm) - gm.weights).abs().max() < 0.03


def test_annealed_langevin_moments_and_modes():
    gm = _two_gaussians()
    torch.manual_seed(3)
    sigmas = torch.cat([torch.logspace(math.log10(10.0), math.log10(0.01), 30, dtype=torch.float64),
                        torch.zeros(1, dtype=torch.float64)])
    x = torch.randn(4000, 2, dtype=torch.float64) * 10.0
    out = annealed_langevin(gm, x, sigmas, step_size=2e-5, steps_per_level=60)
    _assert_moments(out, gm, cov_tol=0.08)
    assert (_mode_weights(out, gm) - gm.weights).abs().max() < 0.04


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_batch_of_8_equals_8_single_runs(name):
    gm = ring()
    sigmas = karras(6, 0.01, 80.0)
    options = {"annealed_langevin": {"steps_per_level": 3}, "ddim": {"eta": 0.7}, "heun": {"churn": 5.0}}
    fn = get_sampler(name, **options.get(name, {}))
    batch = generate(gm, (2,), sigmas, fn, seeds=range(40, 48))
    singles = torch.cat([generate(gm, (2,), sigmas, fn, seeds=[40 + i]) for i in range(8)])
    assert torch.equal(batch, singles)


def test_every_sampler_takes_any_grid():
    gm = ring()
    p = make_process("ddpm")
    from unnoise.grids import ddpm_sigmas

    grids = [karras(8, 0.01, 80.0), log_snr_uniform(8, 0.01, 80.0), ddpm_sigmas(p, 8)]
    for name in FIXED:
        fn = get_sampler(name, **({"steps_per_level": 2} if name == "annealed_langevin" else {}))
        for grid in grids:
            out = generate(gm, (2,), grid, fn, seeds=range(4))
            assert out.shape == (4, 2) and torch.isfinite(out).all(), name


def test_budget_counts_model_calls():
    gm = ring()
    p = make_process("ddpm")
    x = torch.randn(16, 2, dtype=torch.float64) * p.sigma_max
    for name in DETERMINISTIC:
        if name == "auto":
            continue
        for nfe in (5, 10):
            gm.calls = 0
            run_budget(name, gm, x.clone(), nfe=nfe, process=p)
            assert gm.calls <= nfe and gm.calls >= nfe - 1, (name, nfe, gm.calls)
    assert SAMPLERS["heun"].steps_for_nfe(10) == 5


def test_warp_parameterisation_round_trips():
    g = karras(10, 0.01, 157.0)
    back = grid_from_params(params_from_grid(g, 10, 0.005), 10, 157.0, 0.005)
    torch.testing.assert_close(back, g, rtol=2e-3, atol=0)


def test_calibration_improves_on_fresh_noise():
    """The calibrated grid beats every fixed starting grid, also on noise it never saw."""
    gm = ring(std=0.05)
    solver = functools.partial(multistep, order=2)
    reference = functools.partial(multistep, order=3)
    result = calibrate(gm, solver, 6, (2,), 80.0, 0.01, reference_solver=reference, batch=128, sweeps=4)
    assert result.error < 0.7 * result.start_error
    assert result.reference_error < 0.05 * result.error  # the reference is far more accurate than the fit
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 80.0
    ref = reference_ode_solution(gm, x, 80.0, 1e-4, 800)
    ref = gm(ref, torch.full((400,), 1e-4, dtype=torch.float64))
    fixed = min(_rms(solver(gm, x.clone(), g), ref) for g in (karras(6, 0.01, 80.0), log_snr_uniform(6, 0.01, 80.0)))
    assert _rms(solver(gm, x.clone(), result.sigmas), ref) < 0.7 * fixed
