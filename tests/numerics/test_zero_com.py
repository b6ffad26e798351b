"""Noise in the zero-centre-of-mass subspace: zero centre of mass to rounding, padding rows exactly zero,
per-sample seeding, and the right covariance: per axis P = I - 11^T / n over the n real atoms (rank n - 1),
identity on the features, no cross-covariance."""
from __future__ import annotations

import math

import torch

from unnoise.molecules.features import mask_from_counts
from unnoise.molecules.zero_com import (ZeroCoMNoise, centre_of_mass, project, subspace_dimension,
                                         subspace_gaussian_log_density)
from unnoise.sample import euler_ancestral

EPS = torch.finfo(torch.float64).eps
F = 2


def test_noise_has_zero_centre_of_mass_and_zero_padding():
    mask = mask_from_counts(torch.tensor([5, 1, 3, 6]), 6)
    z = ZeroCoMNoise([11, 12, 13, 14], mask)(torch.empty(4, 6, 3 + F, dtype=torch.float64))
    assert float(centre_of_mass(z[..., :3], mask).abs().max()) <= 10 * EPS * float(z.abs().max())
    assert torch.equal(z[~mask], torch.zeros_like(z[~mask]))
    assert torch.equal(z[1, 0, :3], torch.zeros(3, dtype=torch.float64))  # one atom: no positional freedom
    assert float((project(z, mask) - z).abs().max()) <= 10 * EPS * float(z.abs().max())  # already projected


def test_a_batch_equals_each_molecule_drawn_alone():
    mask = mask_from_counts(torch.tensor([4, 2, 5]), 5)
    like = torch.empty(3, 5, 3 + F, dtype=torch.float64)
    batch = ZeroCoMNoise([7, 8, 9], mask)(like)
    for i, seed in enumerate([7, 8, 9]):
        assert torch.equal(ZeroCoMNoise([seed], mask[i:i + 1])(like[i:i + 1])[0], batch[i])


def test_noise_covariance_is_the_subspace_projection():
    """S = 20,000 draws of a 4-atom molecule padded to 6. Each empirical covariance entry has standard
    deviation <= sqrt(2 / S) = 0.010; the tolerance is 6 of those (the draws are seeded, so this is fixed)."""
    n, max_atoms, draws = 4, 6, 20_000
    mask = mask_from_counts(torch.full((draws,), n), max_atoms)
    z = ZeroCoMNoise(range(draws), mask)(torch.empty(draws, max_atoms, 3 + F, dtype=torch.float64))
    real = z[:, :n].reshape(draws, -1)  # (S, n * (3 + F)), atom-major
    empirical = real.T @ real / draws
    projection = torch.eye(n, dtype=torch.float64) - 1.0 / n  # P = I - 11^T / n
    per_atom = torch.block_diag(torch.eye(3, dtype=torch.float64), torch.eye(F, dtype=torch.float64))
    positions = torch.diag(torch.tensor([1.0] * 3 + [0.0] * F, dtype=torch.float64))
    identity = torch.eye(n, dtype=torch.float64)
    expected = torch.kron(identity, per_atom) + torch.kron(projection - identity, positions)  # P on positions
    assert float((empirical - expected).abs().max()) <= 6 * math.sqrt(2 / draws)
    # the expected covariance's rank is the subspace dimension (n - 1) * 3 + n * F
    assert int(torch.linalg.matrix_rank(expected)) == int(subspace_dimension(mask[:1], F)) == (n - 1) * 3 + n * F


def test_subspace_dimension_counts_real_atoms():
    mask = mask_from_counts(torch.tensor([1, 9, 29]), 29)
    assert subspace_dimension(mask, 6).tolist() == [6, 8 * 3 + 9 * 6, 28 * 3 + 29 * 6]


def test_a_sampler_with_zero_com_noise_stays_in_the_subspace():
    """Euler ancestral on the exact denoiser of N(0, I) restricted to the subspace, D(x) = x / (1 + sigma^2):
    every sample ends with zero centre of mass and zero padding."""
    mask = mask_from_counts(torch.tensor([3, 6]), 6)
    noise = ZeroCoMNoise([1, 2], mask)
    sigmas = torch.tensor([20.0, 5.0, 1.0, 0.3, 0.0], dtype=torch.float64)
    x = noise.initial((6, 3 + F), float(sigmas[0]), dtype=torch.float64)
    def exact_denoiser(x, sigma, cond=None):
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2)

    sample = euler_ancestral(exact_denoiser, x, sigmas, noise=noise)
    assert float(centre_of_mass(sample[..., :3], mask).abs().max()) <= 100 * EPS * float(sample.abs().max())
    assert torch.equal(sample[~mask], torch.zeros_like(sample[~mask]))


def test_subspace_log_density_equals_the_gaussian_in_an_orthonormal_basis():
    """In an orthonormal basis V of the zero-mean positions (per axis, n - 1 columns) the projected
    molecule has coordinates c = V^T p, and log N(c; 0, sigma^2 I_d) is the subspace density."""
    n, sigma = 4, 0.7
    mask = mask_from_counts(torch.tensor([n]), 6)
    x = project(torch.randn(1, 6, 3 + F, generator=torch.Generator().manual_seed(3), dtype=torch.float64), mask)
    basis = torch.linalg.qr(torch.eye(n, dtype=torch.float64) - 1.0 / n)[0][:, : n - 1]  # spans 1-perp
    coordinates = torch.cat([(basis.T @ x[0, :n, :3]).flatten(), x[0, :n, 3:].flatten()])
    scale = torch.tensor(sigma, dtype=torch.float64)
    expected = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), scale).log_prob(coordinates).sum()
    actual = subspace_gaussian_log_density(x, mask, scale)
    assert coordinates.numel() == int(subspace_dimension(mask, F))
    assert abs(float(actual) - float(expected)) <= 100 * EPS * abs(float(expected))


def test_molecule_ode_likelihood_equals_the_subspace_gaussian_density():
    """Data N(0, s0^2 I) in the subspace has the exact denoiser D(x, sigma) = x s0^2 / (s0^2 + sigma^2). With
    the exact divergence the ODE maps x to scale x, scale^2 = (s0^2 + sigma_max^2) / (s0^2 + sigma_min^2),
    and gives log N_d(scale x; 0, sigma_max^2) + d log(scale) (about the data's density at sigma_min). A
    projected probe eps = P z estimates the divergence c(u) d as c(u) ||P z||^2, so each draw is off by
    exactly -I (||P z||^2 - d), I = integral of c(u) = s0^2 / (s0^2 + e^{2u}) du: checked per draw."""
    from unnoise.likelihood import draw_probes
    from unnoise.molecules.likelihood import molecule_log_likelihood
    from unnoise.process import make_process

    process, s0, draws = make_process("edm", sigma_min=0.01, sigma_max=20.0), 0.8, 4
    lo, hi = process.sigma_min, process.sigma_max
    mask = mask_from_counts(torch.tensor([3, 1]), 4)
    x = project(torch.randn(2, 4, 3 + F, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * s0, mask)

    def exact_denoiser(x, sigma, cond=None):
        return x * (s0**2 / (s0**2 + sigma.reshape(-1, 1, 1) ** 2))

    result = molecule_log_likelihood(exact_denoiser, x, mask, process, draws=draws, rtol=1e-8, atol=1e-8,
                                     generator=torch.Generator().manual_seed(1))
    scale = math.sqrt((s0**2 + hi**2) / (s0**2 + lo**2))
    dims = subspace_dimension(mask, F).to(torch.float64)
    prior = subspace_gaussian_log_density(x * scale, mask, torch.tensor(hi, dtype=torch.float64))
    expected = prior + dims * math.log(scale)
    data = subspace_gaussian_log_density(x, mask, torch.tensor(math.sqrt(s0**2 + lo**2), dtype=torch.float64))
    assert ((expected - data).abs() <= 1e-3 * dims).all()  # the prior N(0, sigma_max^2) is nearly the data's
    probes = draw_probes("rademacher", draws, x.shape, torch.Generator().manual_seed(1), x.dtype)
    norms = torch.stack([project(z, mask).pow(2).flatten(1).sum(1) for z in probes])  # (K, B): ||P z||^2
    integral = math.log(hi / lo) - 0.5 * math.log((s0**2 + hi**2) / (s0**2 + lo**2))
    per_draw = expected - integral * (norms - dims)
    assert float((result["log_p"] - per_draw).abs().max()) <= 1e-5 * float(expected.abs().max())
    assert result["dims"].tolist() == dims.tolist() == [2 * 3 + 3 * F, 1 * F]
