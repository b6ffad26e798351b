"""Posterior sampling with an exact Gaussian prior: the Tweedie-conditioned denoiser samples the
closed-form Gaussian posterior p(x0 | A x0 = y) for inpainting and super-resolution."""
import pytest
import torch

from unnoise.exact import GaussianMixture
from unnoise.grids import karras
from unnoise.restore import Downsample, Mask
from unnoise.restore.posterior import posterior_summary, tweedie_conditioned
from unnoise.sample.ode import heun

N = 3000


def _prior(seed=0, d=16):
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return GaussianMixture(torch.randn(1, d, generator=g, dtype=torch.float64) * 0.3,
                           (root @ root.T + 0.05 * torch.eye(d, dtype=torch.float64))[None])


def _dense(op, d=16):
    return op(torch.eye(d, dtype=torch.float64).view(d, 1, 4, 4)).reshape(d, -1).T


def _closed_form(prior, a, y):
    """Mean and covariance of x0 ~ N(mu, S) given a x0 = y (Gaussian conditioning)."""
    mu, s = prior.means[0], prior.covs[0]
    gain = s @ a.T @ torch.linalg.pinv(a @ s @ a.T)
    return mu + gain @ (y - a @ mu), s - gain @ a @ s


def _assert_matches(samples, mean, cov, spread=5.0):
    """Sample mean and covariance within `spread` Monte-Carlo standard errors of the closed form."""
    n = samples.shape[0]
    var = cov.diagonal().clamp(min=0)
    assert ((samples.mean(0) - mean).abs() <= spread * (var / n).sqrt() + 1e-9).all()
    err_cov = (samples.T.cov() - cov).abs()
    assert (err_cov <= spread * ((torch.outer(var, var) + cov**2) / n).sqrt() + 1e-9).all()


@pytest.mark.parametrize("operator", [Mask((torch.arange(16) % 3 == 0).double().view(1, 1, 4, 4)), Downsample(2)],
                         ids=["inpaint", "sr"])
def test_tweedie_conditioning_samples_the_exact_gaussian_posterior(operator):
    prior = _prior()
    g = torch.Generator().manual_seed(5)
    chol = torch.linalg.cholesky(prior.covs[0])
    truth = (prior.means[0] + torch.randn(16, generator=g, dtype=torch.float64) @ chol.T).view(1, 1, 4, 4)
    y = operator(truth)
    sigmas = karras(40, 0.002, 80.0).double()
    start = torch.randn(N, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0
    x = heun(tweedie_conditioned(prior, operator, y.expand(N, *y.shape[1:])), start, sigmas)
    a = _dense(operator)
    mean, cov = _closed_form(prior, a, y.reshape(-1))
    assert torch.allclose(operator(x), y.expand_as(operator(x)), atol=1e-6)
    _assert_matches(x.reshape(N, -1), mean, cov)
    summary_mean, summary_std = posterior_summary(x)
    assert torch.allclose(summary_mean.reshape(-1), x.reshape(N, -1).mean(0))
    # the same check rejects the unconditioned prior
    free = heun(prior, start, sigmas).reshape(N, -1)
    with pytest.raises(AssertionError):
        _assert_matches(free, mean, cov)
