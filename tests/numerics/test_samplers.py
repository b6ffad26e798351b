"""Samplers against exact answers on Gaussian mixtures with closed-form denoisers."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import GaussianMixture, random_mixture, reference_ode_solution, ring
from unnoise.grids import ddpm_sigmas, karras
from unnoise.process import make_process
from unnoise.sample import SAMPLERS, SeededNoise, ddim, ddpm_ancestral, euler, generate, get_sampler, heun

SIGMA_MAX, SIGMA_MIN = 20.0, 0.05


@pytest.fixture(scope="module")
def problem():
    """An 8-D, 4-component mixture, starting noise, and the converged ODE solution at SIGMA_MIN."""
    gm = random_mixture(8, 4, seed=1)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    ref = reference_ode_solution(gm, x, SIGMA_MAX, SIGMA_MIN, 600)
    return gm, x, ref


def _rms(a, b):
    return (a - b).pow(2).mean().sqrt().item()


def test_reference_solution_is_converged(problem):
    gm, x, ref = problem
    coarse = reference_ode_solution(gm, x, SIGMA_MAX, SIGMA_MIN, 300)
    assert _rms(coarse, ref) < 1e-7


@pytest.mark.parametrize("sampler,order", [(euler, 1), (heun, 2), (ddim, 1)])
def test_convergence_order(problem, sampler, order):
    """Error against the reference falls by 2^order per doubling of steps (fitted over 32..128 steps)."""
    gm, x, ref = problem
    errors = [_rms(sampler(gm, x.clone(), karras(n, SIGMA_MIN, SIGMA_MAX)[:-1]), ref) for n in (32, 64, 128)]
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(order - 0.25 < r < order + 0.4 for r in rates), (errors, rates)


def test_ddim_eta0_is_euler(problem):
    gm, x, _ = problem
    sigmas = karras(10, 0.002, SIGMA_MAX)
    torch.testing.assert_close(ddim(gm, x.clone(), sigmas, eta=0.0), euler(gm, x.clone(), sigmas), rtol=0, atol=1e-12)


def test_heun_counts_model_calls(problem):
    gm, x, _ = problem
    gm.calls = 0
    heun(gm, x.clone(), karras(10, 0.002, SIGMA_MAX))
    assert gm.calls == 2 * 10 - 1


def test_ancestral_step_is_exact_ddpm_posterior():
    """With D returning the true x0, one DDPM step in sigma equals q(x_{t-1} | x_t, x0) in VP coordinates."""
    p = make_process("ddpm")
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    for t in (1, 37, 500, 999):
        x_t = p.q_sample(x0, torch.full((5,), t), torch.randn(5, 4, generator=g, dtype=torch.float64))
        sigma, sigma_prev = p.sigmas[t], p.sigmas[t - 1]
        x_ve = x_t / p.alpha_bar[t].sqrt()
        out = ddpm_ancestral(lambda x, s, c: x0, x_ve, torch.stack([sigma, sigma_prev]), noise=lambda like: z)
        mean, var = p.posterior(x_t, x0, torch.full((5,), t))
        expected = (mean + var.sqrt()[:, None] * z) / p.alpha_bar[t - 1].sqrt()
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_ddpm_ancestral_matches_mixture_moments():
    gm = GaussianMixture(torch.tensor([[-1.0, 0.5], [1.5, -0.5]]),
                         torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]]]), torch.tensor([0.3, 0.7]))
    p = make_process("ddpm")
    n = 8000
    torch.manual_seed(0)
    x = ddpm_ancestral(gm, torch.randn(n, 2, dtype=torch.float64) * p.sigma_max, ddpm_sigmas(p, 250))
    x = x.double()
    mean, cov = x.mean(0), torch.cov(x.T)
    se = (gm.covariance().diagonal() / n).sqrt()
    assert torch.all((mean - gm.mean()).abs() < 4 * se), (mean, gm.mean())
    torch.testing.assert_close(cov, gm.covariance(), atol=0.04, rtol=0.05)


def test_heun_ring_modes_are_sharp_and_balanced():
    gm = ring()
    x = generate(gm, (2,), karras(40, 0.002, 80.0), "heun", seeds=range(2000))
    radius = x.norm(dim=1)
    assert (radius - 1.5).abs().max() < 0.2
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angle / (2 * math.pi / 8)).long() % 8
    counts = torch.bincount(mode, minlength=8).double() / len(x)
    assert (counts - 1 / 8).abs().max() < 0.04


@pytest.mark.parametrize("name,options", [("ddpm", {}), ("ddim", {"eta": 0.5}), ("heun", {"churn": 10.0}),
                                          ("euler", {})])
def test_batch_equals_single_runs(name, options):
    gm = ring()
    sigmas = karras(12, 0.002, 80.0)
    fn = get_sampler(name, **options)
    batch = generate(gm, (2,), sigmas, fn, seeds=range(100, 108))
    singles = torch.cat([generate(gm, (2,), sigmas, fn, seeds=[100 + i]) for i in range(8)])
    assert torch.equal(batch, singles)


def test_seeded_noise_is_per_sample():
    a = SeededNoise([1, 2, 3]).initial((4,), 1.0)
    b = SeededNoise([3]).initial((4,), 1.0)
    assert torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])


def test_unknown_sampler_lists_valid():
    with pytest.raises(UnnoiseError, match="valid: " + ", ".join(sorted(SAMPLERS))):
        get_sampler("plms")
