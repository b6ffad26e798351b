"""Degradation operators: adjoints, Moore-Penrose pseudo-inverses and projections (against dense matrices,
float64), one-line errors, and range/null-space projection (DDNM) sampling with an exact Gaussian prior."""
import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import GaussianMixture
from unnoise.grids import karras
from unnoise.restore import (MEAN, AddNoise, Compose, Downsample, GaussianBlur, Grayscale, Mask, consistent, ddnm,
                             repaint, repaint_schedule, restore)
from unnoise.sample.ode import euler, heun
from unnoise.sample.sde import ddpm_ancestral, euler_ancestral

SHAPE = (1, 3, 4, 4)


def _mask():
    g = torch.Generator().manual_seed(3)
    return (torch.rand(1, 1, 4, 4, generator=g) > 0.5).double()


OPERATORS = {
    "mask": lambda: Mask(_mask()),
    "down2": lambda: Downsample(2),
    "down4": lambda: Downsample(4),
    "gray": lambda: Grayscale(),
    "gray_mean": lambda: Grayscale(MEAN),
    "blur": lambda: GaussianBlur(0.6),
    "blur_taps": lambda: GaussianBlur(0.8, size=3),
    "gray_then_down": lambda: Compose(Grayscale(), Downsample(2), pinv="factors"),
    "mask_then_down": lambda: Compose(Mask(_mask()), Downsample(2)),
    "blur_then_down": lambda: Compose(GaussianBlur(0.6), Downsample(2)),
    "noisy_down": lambda: AddNoise(Downsample(2), 0.1),
}


def _dense(fn, shape):
    """The matrix of a linear map on tensors of `shape`, column j = fn(e_j)."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return fn(basis).reshape(n, -1).T


def _out_shape(op):
    return (1, *op.forward(torch.zeros(SHAPE, dtype=torch.float64)).shape[1:])


@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint_is_the_transpose(name):
    op = OPERATORS[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, *SHAPE[1:], generator=g, dtype=torch.float64)
    y = torch.randn(5, *_out_shape(op)[1:], generator=g, dtype=torch.float64)
    lhs, rhs = (op(x) * y).flatten(1).sum(1), (x * op.adjoint(y)).flatten(1).sum(1)
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-10)  # <A x, y> = <x, A^T y>
    assert torch.allclose(_dense(op.adjoint, _out_shape(op)), _dense(op.forward, SHAPE).T, atol=1e-12)


@pytest.mark.parametrize("name", OPERATORS)
def test_pseudo_inverse_is_moore_penrose(name):
    op = OPERATORS[name]()
    a, a_pinv = _dense(op.forward, SHAPE), _dense(op.pinv, _out_shape(op))
    assert torch.allclose(a_pinv, torch.linalg.pinv(a), atol=1e-9)
    assert torch.allclose(a @ a_pinv @ a, a, atol=1e-10)  # A A^+ A = A
    assert torch.allclose(a_pinv @ a @ a_pinv, a_pinv, atol=1e-10)  # A^+ A A^+ = A^+
    for p in (a_pinv @ a, a @ a_pinv):  # both products are orthogonal projections
        assert torch.allclose(p, p.T, atol=1e-10) and torch.allclose(p @ p, p, atol=1e-10)


@pytest.mark.parametrize("name", OPERATORS)
def test_project_lands_on_the_measurement_moving_only_in_the_row_space(name):
    op = OPERATORS[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    y = op.forward(torch.randn(SHAPE, generator=g, dtype=torch.float64))
    z = op.project(x, y)
    assert torch.allclose(op.forward(z), y, atol=1e-12)
    null = (x - op.pinv(op(x))) - (z - op.pinv(op(z)))  # (I - A^+ A) x is unchanged
    assert float(null.abs().max()) < 1e-12
    assert torch.allclose(op.project(z, y), z, atol=1e-12)  # idempotent


def test_factor_pseudo_inverse_of_a_chain_is_wrong_unless_the_factors_separate():
    chain = (Mask(_mask()), Downsample(2))  # a partly masked block averages fewer pixels
    a = _dense(Compose(*chain).forward, SHAPE)
    factors = _dense(Compose(*chain, pinv="factors").pinv, _out_shape(Compose(*chain)))
    assert not torch.allclose(factors, torch.linalg.pinv(a), atol=1e-3)  # hence CGLS by default


def test_blur_pseudo_inverse_drops_frequencies_under_the_cutoff():
    op = GaussianBlur(2.0, cutoff=1e-3)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    h = op.response(8, 8, x)
    assert (h < 1e-3).any()  # some frequencies are cut
    a, a_pinv = _dense(op.forward, (1, 1, 8, 8)), _dense(op.pinv, (1, 1, 8, 8))
    assert torch.allclose(a_pinv @ a @ a_pinv, a_pinv, atol=1e-9)
    assert torch.allclose(a_pinv, a_pinv.T, atol=1e-9)  # still symmetric: a regularised inverse


def test_truncated_blur_is_the_circular_convolution_with_its_taps():
    op = GaussianBlur(0.8, size=3)
    w = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * 0.8**2))
    kernel = torch.outer(w, w) / w.sum() ** 2
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular")
    direct = torch.nn.functional.conv2d(padded, kernel.expand(3, 1, 3, 3), groups=3)
    assert torch.allclose(op(x), direct, atol=1e-12)


def test_mask_acts_on_flat_vectors_too():
    op = Mask(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    x = torch.arange(8, dtype=torch.float64).view(2, 4)
    assert torch.equal(op(x), x * torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(op.project(x, torch.zeros(2, 4, dtype=torch.float64))[:, 1], x[:, 1])


def test_bad_inputs_are_one_line_errors():
    cases = [(lambda: Mask(torch.tensor([0.0, 0.5, 1.0])), "binary"),
             (lambda: Mask(torch.ones(1, 1, 4, 4))(torch.zeros(2, 3, 8, 8)), "mask of shape (1, 1, 4, 4)"),
             (lambda: Downsample(3), "2 or 4"),
             (lambda: Downsample(4)(torch.zeros(1, 3, 6, 6)), "divisible"),
             (lambda: Grayscale()(torch.zeros(1, 1, 4, 4)), "3 channels"),
             (lambda: Grayscale()(torch.zeros(3, 4, 4)), "(B, C, H, W)"),
             (lambda: GaussianBlur(0.0), "sigma"),
             (lambda: GaussianBlur(1.0, size=4), "odd"),
             (lambda: AddNoise(Mask(torch.ones(1)), -1.0), "std"),
             (lambda: Compose(), "at least one"),
             (lambda: Compose(Grayscale(), pinv="svd"), "'cgls' or 'factors'"),
             (lambda: consistent(torch.zeros(2, 1, 4, 4), Downsample(2), torch.zeros(2, 1, 4, 4)),
              "expected (2, 1, 2, 2)"),
             (lambda: ddnm(None, AddNoise(Downsample(2), 0.1), torch.zeros(1, 1, 2, 2)), "noiseless"),
             (lambda: restore(None, Downsample(2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4),
                              karras(2, 0.1, 1.0), method="magic"), "unknown restoration method"),
             (lambda: repaint_schedule(10, 0, 1), "jump_length >= 1"),
             (lambda: repaint(None, torch.zeros(2, 1, 4, 4), karras(2, 0.1, 1.0), mask=torch.ones(1, 1, 4, 4),
                              known=torch.zeros(3, 1, 4, 4)), "expected (2, 1, 4, 4)")]
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


def test_repaint_schedule_jumps_back_and_redoes_the_steps():
    assert repaint_schedule(6, jump_length=2, resample=2) == [0, 1, 2, 0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    assert repaint_schedule(4, jump_length=1, resample=1) == [0, 1, 2, 3, 4]
    path = repaint_schedule(50, jump_length=10, resample=10)
    steps = sum(j > i for i, j in zip(path[:-1], path[1:]))
    assert path[-1] == 50 and steps == 50 + 4 * 9 * 10  # 4 jump points, 9 extra passes of 10 steps


def _gaussian_prior(d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return GaussianMixture(torch.randn(1, d, generator=g, dtype=torch.float64) * 0.3,
                           (root @ root.T + 0.05 * torch.eye(d, dtype=torch.float64))[None])


@pytest.mark.parametrize("sampler", [euler, heun, ddpm_ancestral, euler_ancestral])
def test_projection_sampling_keeps_known_pixels_bit_for_bit(sampler):
    prior = _gaussian_prior()
    g = torch.Generator().manual_seed(1)
    truth = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    op = Mask(_mask())
    y = op(truth)
    sigmas = karras(12, 0.002, 80.0).double()
    x = sampler(ddnm(prior, op, y), torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0, sigmas)
    known = op.mask.expand_as(x)
    assert torch.equal(x[known], truth[known])  # the sampler's last step returns D's output: known pixels exact
    free = sampler(prior, torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64) * 80.0, sigmas)
    assert not torch.equal(free[known], truth[known])  # (an unconstrained sample would not)


@pytest.mark.parametrize("method", ["ddnm", "tweedie"])
def test_restore_returns_known_pixels_bit_for_bit_in_float32(method):
    prior, op = _gaussian_prior(), Mask(_mask())
    g = torch.Generator().manual_seed(2)
    truth = torch.randn(3, 1, 4, 4, generator=g)
    x = restore(prior, op, op(truth), torch.randn(3, 1, 4, 4, generator=g) * 80.0, karras(10, 0.002, 80.0),
                method=method)
    known = op.mask.expand_as(x)
    assert x.dtype == torch.float32 and torch.equal(x[known], truth[known])
    painted = repaint(prior, torch.randn(3, 1, 4, 4, generator=g) * 80.0, karras(10, 0.002, 80.0), mask=op.mask,
                      known=truth, jump_length=3, resample=2)
    assert painted.dtype == torch.float32 and torch.equal(painted[known], truth[known])


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
    # the Tweedie-conditioned transform is consistent too (to the CG tolerance, then exactly)
    t = restore(prior, op, y, start, sigmas, method="tweedie", sampler=heun)
    assert torch.allclose(op(t), y, atol=1e-13)
