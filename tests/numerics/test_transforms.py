"""Denoiser transforms: the base forwards what samplers read (process, parameters, learned variances) or
raises naming it; guided DDPM keeps a run's learned variances; DPS as a transform takes the steps of the
paper-faithful `dps_sample` when composed with the ancestral sampler on the same grid."""
import pytest
import torch

from unnoise.exact import GaussianMixture, ring
from unnoise.grids import karras
from unnoise.guide import DenoiserTransform, cfg
from unnoise.restore import Downsample, dps, dps_sample
from unnoise.sample import SeededNoise
from unnoise.sample.sde import ddpm_ancestral

EPS64 = torch.finfo(torch.float64).eps


class LabelledVariance:
    """A two-class exact denoiser (class 0: the ring, class 1 / null: the ring shifted by 1) with a
    learned-variance output v that differs per class, recording which method the sampler called."""

    learned_variance = True
    process = "a process"

    def __init__(self):
        self.gm, self.calls = ring(), []

    def denoise_with_variance(self, x, sigma, cond=None):
        self.calls.append("denoise_with_variance")
        shift = (cond == 1).to(x.dtype).view(-1, 1) if cond is not None else torch.zeros(len(x), 1, dtype=x.dtype)
        x0 = self.gm.posterior_mean(x - shift, sigma) + shift
        return x0, (0.2 + 0.5 * shift).expand_as(x).clone()

    def __call__(self, x, sigma, cond=None):
        self.calls.append("call")
        return self.denoise_with_variance(x, sigma, cond)[0]


def _start(n=16, seed=0):
    return 80.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_guided_ddpm_uses_the_learned_variance():
    """At scale 1, guided DDPM equals unguided DDPM bit for bit and both call the variance method; at
    scale 3 the variance comes from the conditional branch (not the null's, not dropped)."""
    D, sigmas, labels = LabelledVariance(), karras(10, 0.01, 80.0), torch.zeros(16, dtype=torch.long)
    plain = ddpm_ancestral(D, _start(), sigmas, cond=labels, noise=SeededNoise(range(16)))
    guided_model = cfg(D, 1.0, null=1)
    assert guided_model.learned_variance and guided_model.process == "a process"
    D.calls.clear()
    guided = ddpm_ancestral(guided_model, _start(), sigmas, cond=labels, noise=SeededNoise(range(16)))
    assert torch.equal(plain, guided)
    assert D.calls and set(D.calls) == {"denoise_with_variance"}
    x, sigma = _start(4, 1), torch.full((4,), 2.0, dtype=torch.float64)
    x0, v = cfg(D, 3.0, null=1).denoise_with_variance(x, sigma, torch.zeros(4, dtype=torch.long))
    assert torch.equal(v, torch.full_like(x, 0.2))  # the conditional rows' variance
    x0_cond, x0_null = D(x, sigma, torch.zeros(4, dtype=torch.long)), D(x, sigma, torch.ones(4, dtype=torch.long))
    scale = float((x0_cond - x0_null).abs().max())
    assert torch.allclose(x0, x0_null + 3.0 * (x0_cond - x0_null), rtol=0, atol=16 * EPS64 * (1 + scale))


def test_transform_base_forwards_or_raises_naming_the_attribute():
    class Identity(DenoiserTransform):
        def denoised(self, x, sigma, cond, inner):
            return inner(x, sigma, cond)

    gm = ring()
    wrapped = Identity(gm)
    with pytest.raises(AttributeError, match="Identity wraps GaussianMixture, which has no 'learned_variance'"):
        _ = wrapped.learned_variance
    assert getattr(wrapped, "learned_variance", False) is False  # samplers' getattr default still works
    assert getattr(wrapped, "parameters", None) is None
    with pytest.raises(AttributeError, match="denoise_with_variance"):
        wrapped.denoise_with_variance(_start(2), torch.ones(2, dtype=torch.float64))
    net = torch.nn.Linear(2, 2).double()
    assert next(iter(Identity(net).parameters())).dtype == torch.float64


def _gaussian_prior(d=16, seed=0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    cov = root @ root.T + 0.05 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(1, d, generator=g, dtype=torch.float64)
    return GaussianMixture(mean, cov[None], torch.ones(1, dtype=torch.float64))


class Image:
    """A d = 16 Gaussian prior seen as 1 x 4 x 4 images."""

    def __init__(self, gm):
        self.gm = gm

    def __call__(self, x, sigma, cond=None):
        return self.gm(x.reshape(len(x), -1), sigma).reshape(x.shape)


@pytest.mark.parametrize("operator", ["sr", "nonlinear"])
def test_dps_transform_with_ancestral_sampler_equals_dps_sample(operator):
    """Chung et al. 2023, Alg. 1: the transform composed with DDPM ancestral steps on the same grid gives
    dps_sample's samples, to rounding (tolerance in float64 eps times the largest state value)."""
    prior = Image(_gaussian_prior())
    op = Downsample(2) if operator == "sr" else (lambda v: torch.tanh(2 * Downsample(2)(v)))
    truth = prior.gm.sample(1, torch.Generator().manual_seed(3))[0].reshape(1, 1, 4, 4)
    y = op(truth)
    sigmas = karras(30, 0.002, 80.0)
    start = 80.0 * torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    reference = dps_sample(prior, op, y, sigmas, start.clone(), zeta=0.3, noise=SeededNoise(range(64)))
    composed = ddpm_ancestral(dps(prior, op, y, sigmas, zeta=0.3), start.clone(), sigmas, noise=SeededNoise(range(64)))
    assert torch.allclose(composed, reference, rtol=0, atol=64 * EPS64 * 80.0)  # measured: 1e-14
    free = ddpm_ancestral(prior, start.clone(), sigmas, noise=SeededNoise(range(64)))
    assert not torch.allclose(free, reference, atol=1e-3)  # the correction matters


def test_dps_transform_refuses_a_sigma_off_its_grid():
    from unnoise.errors import UnnoiseError

    prior, sigmas = Image(_gaussian_prior()), karras(5, 0.01, 80.0)
    y = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    guided = dps(prior, Downsample(2), y, sigmas)
    with pytest.raises(UnnoiseError, match="not on the grid"):
        guided(torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.full((2,), 3.3, dtype=torch.float64))
