"""Degradation operators: adjoints, Moore-Penrose pseudo-inverses (against dense matrices), errors, and
range/null-space projection sampling with an exact Gaussian prior."""
import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import GaussianMixture
from unnoise.grids import karras
from unnoise.restore import AddNoise, Compose, Downsample, GaussianBlur, Grayscale, Mask, consistent, ddnm
from unnoise.sample.ode import euler, heun

SHAPE = (1, 3, 4, 4)


def _mask():
    g = torch.Generator().manual_seed(3)
    return (torch.rand(1, 1, 4, 4, generator=g) > 0.5).double()


OPERATORS = {
    "mask": lambda: Mask(_mask()),
    "down2": lambda: Downsample(2),
    "down4": lambda: Downsample(4),
    "gray": lambda: Grayscale(),
    "blur": lambda: GaussianBlur(0.6),
    "gray_then_down": lambda: Compose(Grayscale(), Downsample(2)),
    "noisy_down": lambda: AddNoise(Downsample(2), 0.1),
}


def _dense(fn, shape):
    """The matrix of a linear map on tensors of `shape`, column j = fn(e_j)."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return fn(basis).reshape(n, -1).T


@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint_and_pseudo_inverse_match_dense_matrices(name):
    op = OPERATORS[name]()
    a = _dense(op.forward, SHAPE)
    out_shape = (1, *op.forward(torch.zeros(SHAPE, dtype=torch.float64)).shape[1:])
    assert torch.allclose(_dense(op.adjoint, out_shape), a.T, atol=1e-12)
    a_pinv = _dense(op.pinv, out_shape)
    assert torch.allclose(a_pinv, torch.linalg.pinv(a), atol=1e-9)
    # Moore-Penrose conditions
    assert torch.allclose(a @ a_pinv @ a, a, atol=1e-10)
    assert torch.allclose(a_pinv @ a @ a_pinv, a_pinv, atol=1e-10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    y = op.forward(torch.randn(SHAPE, generator=g, dtype=torch.float64))
    assert torch.allclose(op.forward(op.project(x, y)), y, atol=1e-12)  # projection lands on A x = y


def test_blur_pseudo_inverse_drops_frequencies_under_the_cutoff():
    op = GaussianBlur(2.0, cutoff=1e-3)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    h = op.response(8, 8, x)
    assert (h < 1e-3).any()  # some frequencies are cut
    a, a_pinv = _dense(op.forward, (1, 1, 8, 8)), _dense(op.pinv, (1, 1, 8, 8))
    assert torch.allclose(a_pinv @ a @ a_pinv, a_pinv, atol=1e-9)
    assert torch.allclose(a_pinv, a_pinv.T, atol=1e-9)  # still symmetric: a regularised inverse


def test_bad_inputs_are_one_line_errors():
    cases = [(lambda: Mask(torch.tensor([0.0, 0.5, 1.0])), "binary"),
             (lambda: Downsample(3), "2 or 4"),
             (lambda: Downsample(4)(torch.zeros(1, 3, 6, 6)), "divisible"),
             (lambda: Grayscale()(torch.zeros(1, 1, 4, 4)), "3 channels"),
             (lambda: Grayscale()(torch.zeros(3, 4, 4)), "(B, C, H, W)"),
             (lambda: GaussianBlur(0.0), "sigma"),
             (lambda: AddNoise(Mask(torch.ones(1)), -1.0), "std"),
             (lambda: Compose(), "at least one")]
    for make, words in cases:
        with pytest.raises(UnnoiseError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
            make()
        assert "\n" not in str(info.value)


def test_noisy_measurement_draws_seeded_noise():
    op = AddNoise(Downsample(2), 0.5)
    x = torch.zeros(2, 1, 4, 4)
    y1 = op.measure(x, torch.Generator().manual_seed(1))
    y2 = op.measure(x, torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and 0.2 < float(y1.std()) < 1.0


def _gaussian_prior(d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return GaussianMixture(torch.randn(1, d, generator=g, dtype=torch.float64) * 0.3,
                           (root @ root.T + 0.05 * torch.eye(d, dtype=torch.float64))[None])


@pytest.mark.parametrize("sampler", [euler, heun])
def test_projection_sampling_keeps_known_pixels_bit_for_bit(sampler):
    prior = _gaussian_prior()
    g = torch.Generator().manual_seed(1)
    truth = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    op = Mask(_mask())
    y = op(truth)
    sigmas = karras(12, 0.002, 80.0).double()
    x = sampler(ddnm(prior, op, y), torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0, sigmas)
    known = op.mask.expand_as(x)
    assert torch.equal(x[known], truth[known])  # the known pixels come back exactly
    free = sampler(prior, torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0, sigmas)
    assert not torch.equal(free[known], truth[known])  # (an unconstrained sample would not)


def test_projection_super_resolution_is_consistent_and_conditions_the_prior():
    prior = _gaussian_prior(seed=2)
    g = torch.Generator().manual_seed(4)
    chol = torch.linalg.cholesky(prior.covs[0])
    truth = (prior.means[0] + torch.randn(64, 16, generator=g, dtype=torch.float64) @ chol.T).view(64, 1, 4, 4)
    op = Downsample(2)
    y = op(truth)
    sigmas = karras(16, 0.002, 80.0).double()
    start = torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0
    x = heun(ddnm(prior, op, y), start, sigmas)
    assert torch.allclose(op(x), y, atol=1e-12) and torch.allclose(op(consistent(x, op, y)), y, atol=1e-14)
    # the measurement pins the range space: much closer to the truth than unconstrained prior samples
    free = heun(prior, start, sigmas)
    assert float(((x - truth) ** 2).mean()) < 0.7 * float(((free - truth) ** 2).mean())
