"""Likelihood against exact answers: the probability-flow ODE NLL equals the mixture's log-density, the
Hutchinson estimate is unbiased, the DDPM variational bound upper-bounds the exact NLL and tightens with T."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import GaussianMixture, random_mixture
from unnoise.likelihood import ode_log_likelihood
from unnoise.process import make_process
from unnoise.vlb import discretized_gaussian_nll, normal_kl, variational_bound


def two_blobs() -> GaussianMixture:
    covs = torch.stack([torch.eye(2) * 0.1, torch.tensor([[0.2, 0.05], [0.05, 0.1]])])
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), covs, torch.tensor([0.4, 0.6]))


class ExactModel:
    """The exact posterior mean E[x0 | x] as a denoiser on a given process."""

    learned_variance = False

    def __init__(self, gm, process):
        self.gm, self.process = gm, process

    def __call__(self, x, sigma, cond=None):
        return self.gm.posterior_mean(x, sigma)


@pytest.mark.parametrize("gm", [two_blobs(), random_mixture(8, 4, seed=3)], ids=["2d", "8d"])
def test_ode_nll_matches_exact_log_density(gm):
    x, _ = gm.sample(64, torch.Generator().manual_seed(0))
    process = make_process("ddpm")
    result = ode_log_likelihood(gm, x, process, sigma_start=1e-3)
    exact = gm.log_density(x, 0.0)
    assert abs(float(result.nll().mean() + exact.mean())) < 0.01 * float(exact.abs().mean())  # within 1%
    assert float((result.log_p[0] - exact).abs().max()) < 0.05  # per point, incl. the Gaussian-prior mismatch
    # with the exact density at sigma_max as the prior, only the solver's error is left
    # with the exact density at sigma_max as the prior, only the solver's error is left, and it converges
    exact_prior = ode_log_likelihood(gm, x, process, sigma_start=1e-3, rtol=1e-7, atol=1e-7,
                                     log_prior=lambda y: gm.log_density(y, process.sigma_max))
    assert float((exact_prior.log_p[0] - gm.log_density(x, 1e-3)).abs().max()) < 1e-4


def test_ode_nll_of_a_gaussian_is_closed_form():
    gm = GaussianMixture(torch.zeros(1, 3), (torch.eye(3) * 0.3)[None])
    x, _ = gm.sample(16, torch.Generator().manual_seed(1))
    result = ode_log_likelihood(gm, x, make_process("vp"), sigma_start=0.02, rtol=1e-7, atol=1e-7,
                                log_prior=lambda y: gm.log_density(y, make_process("vp").sigma_max))
    torch.testing.assert_close(result.log_p[0], gm.log_density(x, 0.02), atol=1e-4, rtol=0)


def test_hutchinson_is_unbiased_within_its_standard_error():
    gm = random_mixture(8, 4, seed=3)
    x, _ = gm.sample(32, torch.Generator().manual_seed(0))
    process = make_process("ddpm")
    exact = ode_log_likelihood(gm, x, process, sigma_start=1e-3)
    for probe in ("rademacher", "gaussian"):
        est = ode_log_likelihood(gm, x, process, sigma_start=1e-3, divergence="hutchinson", draws=16, probe=probe,
                                 generator=torch.Generator().manual_seed(2))
        diff = (est.log_p - exact.log_p).flatten()  # same trajectories: only the probes differ
        stderr = float(diff.std() / math.sqrt(len(diff)))
        assert stderr > 0
        assert abs(float(diff.mean())) < 3 * stderr


def test_vlb_upper_bounds_exact_nll_and_tightens_with_more_steps():
    gm = two_blobs()
    x, _ = gm.sample(2000, torch.Generator().manual_seed(0))
    nll = float(-gm.log_density(x, 0.0).mean())
    gaps = []
    for steps in (50, 200, 1000):  # the same continuous VP schedule at three resolutions
        process = make_process("ddpm", steps=steps, beta_start=0.1 / steps, beta_end=20 / steps)
        bound = variational_bound(ExactModel(gm, process), x, variance="fixed_small",
                                  generator=torch.Generator().manual_seed(1)).total()
        stderr = float(bound.std() / math.sqrt(len(bound)))
        assert float(bound.mean()) - 3 * stderr > nll
        gaps.append(float(bound.mean()) - nll)
    assert gaps[0] > gaps[1] > gaps[2]


def test_vlb_terms_and_unavailable_variance():
    gm = two_blobs()
    process = make_process("ddpm", steps=20, beta_start=0.005, beta_end=0.5)
    x, _ = gm.sample(8, torch.Generator().manual_seed(0))
    terms = variational_bound(ExactModel(gm, process), x, variance="fixed_large", generator=torch.Generator())
    assert terms.steps.shape == (8, 19) and terms.prior.shape == terms.decoder.shape == (8,)
    torch.testing.assert_close(terms.bits_per_dim(), terms.total() / (2 * math.log(2)))
    with pytest.raises(UnnoiseError, match="no learned variance"):
        variational_bound(ExactModel(gm, process), x)
    with pytest.raises(UnnoiseError, match="discrete DDPM chain"):
        variational_bound(ExactModel(gm, make_process("edm")), x, variance="fixed_small")


def test_discretized_gaussian_is_a_distribution_over_the_levels():
    levels = 17
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)
    for mean, log_var in ((0.1, -3.0), (0.97, -8.0), (-2.0, 0.5)):
        nll = discretized_gaussian_nll(grid, torch.full_like(grid, mean), torch.full_like(grid, log_var), 2 / 16)
        torch.testing.assert_close(nll.neg().exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_normal_kl_closed_form():
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    kl = normal_kl(f64(1.0), f64(math.log(2.0)), f64(0.0), f64(0.0))  # KL(N(1, 2) || N(0, 1))
    assert math.isclose(float(kl), 0.5 * (2.0 + 1.0 - 1.0 - math.log(2.0)), rel_tol=1e-12)


def test_discretized_gaussian_gradients_stay_finite_far_from_the_data():
    grid = torch.linspace(-1, 1, 17).repeat(3)
    mean = (grid + torch.tensor([5.0, -5.0, 0.0]).repeat_interleave(17)).requires_grad_(True)
    log_var = torch.full_like(grid, -2.0, requires_grad=True)
    discretized_gaussian_nll(grid, mean, log_var, 2 / 16).sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_var.grad).all()
