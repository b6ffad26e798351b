"""Exact answers for the forward processes: Markov chain vs closed-form marginals, Bayes posteriors."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.grids import ddpm_sigmas, ddpm_timesteps, karras, log_snr_uniform
from unnoise.process import DiscreteDDPM, make_process, process_from_config

SCHEDULES = [
    {"schedule": "linear"},
    {"schedule": "cosine"},
    {"schedule": "sigmoid", "beta_start": 1e-4, "beta_end": 0.02},
    {"schedule": "linear", "zero_terminal_snr": True},
    {"schedule": "cosine", "zero_terminal_snr": True},
]


@pytest.mark.parametrize("options", SCHEDULES)
def test_markov_chain_moments_match_closed_form(options):
    """Propagate mean and variance of x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z exactly, step by step."""
    p = make_process("ddpm", **options)
    x0 = torch.tensor([-1.3, 0.0, 0.7, 2.0], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for t in range(p.steps):
        mean = (1 - p.betas[t]).sqrt() * mean
        var = (1 - p.betas[t]) * var + p.betas[t]
        alpha, s = p.alpha_s(t)
        torch.testing.assert_close(mean, alpha * x0, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(var, s**2 * torch.ones_like(x0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", SCHEDULES)
def test_simulated_chain_matches_marginal(options):
    """Monte Carlo: simulate the 1000-step chain and compare with q(x_t | x0) at several t."""
    p = make_process("ddpm", **options)
    g = torch.Generator().manual_seed(0)
    n, x0 = 20000, 1.5
    x = torch.full((n,), x0, dtype=torch.float64)
    checks = {99, 499, 999}
    for t in range(p.steps):
        x = (1 - p.betas[t]).sqrt() * x + p.betas[t].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
        if t in checks:
            alpha, s = p.alpha_s(t)
            assert abs(x.mean() - alpha * x0) < 5 * s / math.sqrt(n)
            assert abs(x.var() / s**2 - 1) < 5 * math.sqrt(2 / n)


def test_zero_terminal_snr_ends_at_zero_snr():
    p = make_process("ddpm", zero_terminal_snr=True)
    assert p.alpha_bar[-1] == 0 and p.snr(p.steps - 1) == 0
    assert math.isinf(p.sigmas[-1]) and math.isfinite(p.sigma_max)
    torch.testing.assert_close(p.alpha_bar[0], make_process("ddpm").alpha_bar[0])


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_posterior_equals_bayes(t):
    """q(x_{t-1} | x_t, x0) from the product of q(x_{t-1} | x0) and q(x_t | x_{t-1})."""
    p = make_process("ddpm", schedule="cosine")
    x0 = torch.tensor([[0.3, -0.8]], dtype=torch.float64)
    x_t = torch.tensor([[1.1, 0.2]], dtype=torch.float64)
    ab_prev, alpha, beta = p.alpha_bar[t - 1], p.alphas[t], p.betas[t]
    precision = 1 / (1 - ab_prev) + alpha / beta
    bayes_var = 1 / precision
    bayes_mean = bayes_var * (ab_prev.sqrt() * x0 / (1 - ab_prev) + alpha.sqrt() * x_t / beta)
    mean, var = p.posterior(x_t, x0, torch.tensor([t]))
    torch.testing.assert_close(mean, bayes_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, bayes_var.expand(1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["ddpm", "vp", "ve", "edm", "flow"])
def test_t_sigma_round_trip_and_coefficients(name):
    p = make_process(name)
    sigma = torch.logspace(math.log10(p.sigma_min), math.log10(p.sigma_max), 37, dtype=torch.float64)
    torch.testing.assert_close(p.sigma(p.t_of_sigma(sigma)), sigma, rtol=1e-9, atol=0)
    t = p.t_of_sigma(sigma)
    alpha, s = p.alpha_s(t)
    torch.testing.assert_close(s / alpha, sigma, rtol=1e-9, atol=0)
    if p.kind == "vp":
        torch.testing.assert_close(alpha**2 + s**2, torch.ones_like(alpha))
    elif p.kind == "flow":
        torch.testing.assert_close(alpha + s, torch.ones_like(alpha), rtol=0, atol=4 * torch.finfo(alpha.dtype).eps)
    else:
        assert torch.all(alpha == 1)
    a2, s2 = p.coefficients(sigma)
    torch.testing.assert_close(s2 / a2, sigma)
    assert process_from_config(p.config()).config() == p.config()


def test_fractional_timesteps_interpolate_log_sigma():
    p = make_process("ddpm")
    t = torch.tensor([10.5, 400.25], dtype=torch.float64)
    expected = torch.stack([(p.sigmas[10] * p.sigmas[11]).sqrt(),
                            p.sigmas[400] ** 0.75 * p.sigmas[401] ** 0.25])
    torch.testing.assert_close(p.sigma(t), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.t_of_sigma(expected), t, rtol=1e-10, atol=1e-10)


def test_q_sample_is_closed_form():
    p = make_process("ddpm")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    x_t = p.q_sample(x0, t, eps)
    ab = p.alpha_bar[t][:, None]
    torch.testing.assert_close(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)


def test_ddpm_timestep_spacings():
    assert ddpm_timesteps(1000, 10, "trailing").tolist() == list(range(999, 0, -100))
    assert ddpm_timesteps(1000, 10, "linspace").tolist()[0] == 999
    assert ddpm_timesteps(1000, 10, "linspace").tolist()[-1] == 0
    assert ddpm_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    p = make_process("ddpm")
    sigmas = ddpm_sigmas(p, 10)
    assert sigmas[0] == p.sigmas[999] and sigmas[-1] == 0 and len(sigmas) == 11
    assert torch.all(sigmas[:-1] > sigmas[1:])
    z = DiscreteDDPM(make_process("ddpm", zero_terminal_snr=True).cfg)
    assert math.isfinite(ddpm_sigmas(z, 10)[0])


def test_karras_and_log_snr_grids():
    g = karras(10, 0.002, 80.0, rho=7)
    assert len(g) == 11 and g[-1] == 0
    torch.testing.assert_close(g[[0, 9]], torch.tensor([80.0, 0.002], dtype=torch.float64))
    # Eq. 5: sigma^(1/rho) is linear in i
    inner = g[:-1] ** (1 / 7)
    torch.testing.assert_close(inner[1:] - inner[:-1], (inner[1] - inner[0]).expand(9))
    ls = log_snr_uniform(5, 0.01, 100.0)
    torch.testing.assert_close(ls[:-1].log().diff(), torch.full((4,), -math.log(100) / 2, dtype=torch.float64))


def test_unknown_schedule_lists_valid():
    with pytest.raises(UnnoiseError, match="valid: cosine, linear, scaled_linear, sigmoid"):
        make_process("ddpm", schedule="quadratic")
    with pytest.raises(UnnoiseError, match="valid: ddpm, edm, flow, ve, vp"):
        make_process("rectified")
    with pytest.raises(UnnoiseError, match="unknown field 'beta_max'"):
        make_process("ddpm", beta_max=0.02)
