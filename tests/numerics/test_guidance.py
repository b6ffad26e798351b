"""Classifier-free guidance against exact answers: Gaussian classes with closed-form guided ODE flows, a
two-class mixture with exact conditional and unconditional denoisers, and condition dropout's rate."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import GaussianMixture, LabelledMixture, reference_ode_solution
from unnoise.grids import karras
from unnoise.guide import cfg, drop_conditions
from unnoise.sample import dpmpp_3m, heun

SIGMA_MAX, SIGMA_END = 80.0, 1e-3


def diagonal_gaussian(mean, var) -> GaussianMixture:
    mean, var = torch.tensor([mean], dtype=torch.float64), torch.tensor(var, dtype=torch.float64)
    return GaussianMixture(mean, torch.diag(var)[None])


class TwoGaussians:
    """Exact denoiser: label 0 -> N(m_c, diag v_c); the null label 1 (or None) -> N(m_u, diag v_u)."""

    def __init__(self, m_c, v_c, m_u, v_u):
        self.m_c, self.v_c, self.m_u, self.v_u = (torch.tensor(a, dtype=torch.float64) for a in (m_c, v_c, m_u, v_u))
        self.conditional, self.unconditional = diagonal_gaussian(m_c, v_c), diagonal_gaussian(m_u, v_u)

    def __call__(self, x, sigma, cond=None):
        out = self.unconditional(x, sigma)
        if cond is not None:
            out = torch.where((cond == 0)[:, None], self.conditional(x, sigma), out)
        return out


def closed_form_flow(g: TwoGaussians, w: float, x_start, sigma_start: float, sigma_end: float):
    """The guided probability-flow ODE dx/dsigma = sum_k c_k sigma (x - m_k) / (v_k + sigma^2), with
    c = (w, 1 - w) for (conditional, unconditional), is linear: with the integrating factor
    Phi(sigma) = prod_k (v_k + sigma^2)^(c_k / 2),
        x(s_e) = Phi(s_e) [x(s_0) / Phi(s_0) + int_{s_e}^{s_0} b(sigma) / Phi(sigma) dsigma],
    b = sigma sum_k c_k m_k / (v_k + sigma^2). Per dimension; the 1-D integral by quadrature in log sigma."""
    terms = ((w, g.m_c, g.v_c), (1 - w, g.m_u, g.v_u))

    def phi(s):
        return math.prod((v + s**2) ** (c / 2) for c, _, v in terms)

    u = torch.linspace(math.log(sigma_end), math.log(sigma_start), 400_001, dtype=torch.float64)
    s = u.exp()[:, None]
    integrand = s * sum(c * m / (v + s**2) for c, m, v in terms) / phi(s) * s  # b / Phi * dsigma/du
    integral = torch.trapezoid(integrand, u, dim=0)
    return phi(sigma_end) * (x_start / phi(sigma_start) + integral)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_flow_of_gaussians_matches_closed_form(w):
    """Every sample lands where the closed-form guided flow sends its starting noise: to 1e-8 with a
    converged RK4 solve of the guided denoiser, and to Heun's own 2nd-order error at 100 steps."""
    g = TwoGaussians([1.0, -0.5], [0.3, 0.05], [0.0, 0.5], [1.0, 0.4])
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    expected = closed_form_flow(g, w, x, SIGMA_MAX, SIGMA_END)
    guided, cond = cfg(g, w, null=1), torch.zeros(64, dtype=torch.long)
    converged = reference_ode_solution(lambda x, sigma: guided(x, sigma, cond), x, SIGMA_MAX, SIGMA_END, 1000)
    assert (converged - expected).abs().max() < 1e-8
    got = heun(guided, x.clone(), karras(100, SIGMA_END, SIGMA_MAX)[:-1], cond=cond)
    assert (got - expected).abs().max() < 5e-3


def test_equal_variances_give_the_shifted_gaussian():
    """With equal class variances the guided family is the diffusion of N(w m_c + (1 - w) m_u, v): the
    guided samples' mean and covariance match it (Monte Carlo, 20,000 samples started from that family's
    marginal at SIGMA_MAX)."""
    w, v = 4.0, [0.2, 0.2]
    g = TwoGaussians([1.0, 0.0], v, [0.0, 0.5], v)
    n, mean = 20_000, w * g.m_c + (1 - w) * g.m_u
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = mean + (0.2 + SIGMA_MAX**2) ** 0.5 * z
    out = dpmpp_3m(cfg(g, w, null=1), x, karras(60, SIGMA_END, SIGMA_MAX), cond=torch.zeros(n, dtype=torch.long))
    assert ((out.mean(0) - mean).abs() < 4 * math.sqrt(0.2 / n)).all()
    cov = torch.cov(out.T)
    assert torch.allclose(cov, 0.2 * torch.eye(2, dtype=torch.float64), atol=4 * 0.2 * math.sqrt(2 / n))


@pytest.fixture(scope="module")
def two_classes():
    means = torch.tensor([[1.5, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    covs = torch.stack([torch.tensor([[0.2, 0.05], [0.05, 0.1]]), torch.tensor([[0.1, 0.0], [0.0, 0.3]])]).double()
    return LabelledMixture(GaussianMixture(means, covs, torch.tensor([0.3, 0.7])))


def _guided_samples(D, w, n, label=0, steps=40, start=None):
    """Guided samples from x = x0 + SIGMA_MAX z, x0 drawn from `start` (the distribution the flow should
    reach, so that its exact noisy marginal is the starting point), or pure noise when start is None."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * SIGMA_MAX
    if start is not None:
        x = x + start.sample(n, g)[0]
    return dpmpp_3m(cfg(D, w, null=D.null_class), x, karras(steps, 1e-3, SIGMA_MAX),
                    cond=torch.full((n,), label, dtype=torch.long))


@pytest.mark.parametrize("w,label", [(1.0, 0), (1.0, 1), (0.0, 0)])
def test_mixture_guidance_limits_match_closed_form_moments(two_classes, w, label):
    """w = 1 samples the class's Gaussian, w = 0 the whole mixture: means and covariances in closed form."""
    n = 8000
    mixture = two_classes.mixture
    target = two_classes.components[label] if w == 1 else mixture
    out = _guided_samples(two_classes, w, n, label=label, start=target)
    mean, cov = target.mean(), target.covariance()
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((out.mean(0) - mean).abs() < 4 * se).all()
    assert (torch.cov(out.T) - cov).abs().max() < 5 * cov.abs().max() * math.sqrt(2 / n)


def test_mixture_guidance_is_the_guided_score(two_classes):
    """At w = 3 the guided denoiser is x + sigma^2 [(1 - w) grad log p(x) + w grad log p(x | c)], the score
    built from the exact densities (an independent form), at every noise level."""
    w, label, n = 3.0, 0, 200
    g = torch.Generator().manual_seed(3)
    sigma = torch.logspace(-3, 2, n, dtype=torch.float64)
    x = two_classes.mixture.sample(n, g)[0] + sigma[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    score = (1 - w) * two_classes.mixture.score(x, sigma) + w * two_classes.components[label].score(x, sigma)
    guided = cfg(two_classes, w, null=two_classes.null_class)(x, sigma, torch.full((n,), label))
    assert torch.allclose(guided, x + sigma[:, None] ** 2 * score, rtol=1e-9, atol=1e-9)


def test_guidance_runs_both_branches_in_one_call(two_classes):
    two_classes.calls = 0
    _guided_samples(two_classes, 2.0, 16, steps=10)
    assert two_classes.calls == 10  # dpmpp_3m: one (doubled-batch) call per step


def test_interval_and_rescale(two_classes):
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    cond = torch.zeros(6, dtype=torch.long)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0, 9.0], dtype=torch.float64)
    plain, conditional = cfg(two_classes, 3.0, 2)(x, sigma, cond), two_classes(x, sigma, cond)
    inside = cfg(two_classes, 3.0, 2, interval=(0.5, 5.0))(x, sigma, cond)
    active = (sigma > 0.5) & (sigma <= 5.0)
    assert torch.equal(inside[active], plain[active]) and torch.equal(inside[~active], conditional[~active])
    assert torch.equal(cfg(two_classes, 3.0, 2, rescale=0.0)(x, sigma, cond), plain)
    full = cfg(two_classes, 3.0, 2, rescale=1.0)(x, sigma, cond)
    assert torch.allclose(full.std(1), conditional.std(1), rtol=1e-10)
    assert torch.equal(cfg(two_classes, 3.0, 2)(x, sigma, None), two_classes(x, sigma, None))


def test_bad_guidance_settings_are_named():
    for kwargs, word in (({"scale": -1}, "scale"), ({"scale": 2, "rescale": 1.5}, "rescale"),
                         ({"scale": 2, "interval": (3.0, 1.0)}, "interval")):
        with pytest.raises(UnnoiseError, match=word):
            cfg(lambda x, s, c=None: x, null=0, **kwargs)


def test_condition_dropout_rate():
    labels = torch.arange(200_000) % 10
    dropped = drop_conditions(labels, 0.15, 10, torch.Generator().manual_seed(0))
    rate = (dropped == 10).double().mean().item()
    assert abs(rate - 0.15) < 4 * math.sqrt(0.15 * 0.85 / len(labels))
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(drop_conditions(labels, 0.0, 10, torch.Generator()), labels)
