"""Flow matching (rectified flow, x_t = (1 - t) x0 + t eps; Liu et al. 2023, Lipman et al. 2023) against
a Gaussian mixture's exact denoiser: the velocity network built from it is the exact probability-flow
velocity, its loss is the exact irreducible value, and the existing samplers drive it to the mixture."""
import math

import torch

from unnoise.exact import random_mixture
from unnoise.grids import sigma_grid
from unnoise.losses import denoising_loss
from unnoise.param import Denoiser
from unnoise.process import make_process
from unnoise.sample.ode import heun

EPS64 = torch.finfo(torch.float64).eps


class ExactVelocity(torch.nn.Module):
    """The exact flow-matching velocity u*(x_t, t) = E[eps - x0 | x_t] = (x_t - E[x0 | x_t]) / t, from the
    mixture's exact posterior mean, in the network's own coordinates (x_t, 1000 t)."""

    def __init__(self, mixture):
        super().__init__()
        self.mixture = mixture

    def forward(self, x_t, noise_input, cond=None):
        t = (noise_input.to(torch.float64) / 1000)[:, None]
        x_ve, sigma = x_t / (1 - t), (t / (1 - t))[:, 0]
        x0 = self.mixture.posterior_mean(x_ve, sigma)
        return (x_t - x0) / t


def _setup(dim=3, seed=0):
    mixture = random_mixture(dim, 3, seed=seed)
    process = make_process("flow")
    return mixture, process, Denoiser(ExactVelocity(mixture), process, "velocity")


def test_velocity_denoiser_is_the_exact_denoiser():
    mixture, process, D = _setup()
    g = torch.Generator().manual_seed(1)
    sigma = torch.logspace(math.log10(process.sigma_min), math.log10(process.sigma_max), 16, dtype=torch.float64)
    x = mixture.sample(16, g)[0] + sigma[:, None] * torch.randn(16, 3, generator=g, dtype=torch.float64)
    expected = mixture(x, sigma)
    scale = x.abs().max()
    torch.testing.assert_close(D(x, sigma), expected, rtol=0, atol=1000 * EPS64 * scale)


def test_velocity_is_the_probability_flow_ode_in_flow_time():
    """d x_t / dt of the VE probability-flow ODE dx/dsigma = (x - D) / sigma (Karras et al. 2022, Eq. 4)
    mapped to x_t = x / (1 + sigma), t = sigma / (1 + sigma): equals the velocity network's output."""
    mixture, process, D = _setup(seed=2)
    g = torch.Generator().manual_seed(3)
    t = torch.linspace(0.05, 0.95, 12, dtype=torch.float64)
    sigma = t / (1 - t)
    x = mixture.sample(12, g)[0] + sigma[:, None] * torch.randn(12, 3, generator=g, dtype=torch.float64)
    dx_dsigma = (x - mixture(x, sigma)) / sigma[:, None]
    dsigma_dt = 1 / (1 - t) ** 2
    # x_t = (1 - t) x: d/dt = (1 - t) dx/dt - x, with dx/dt = dx/dsigma dsigma/dt
    expected = (1 - t)[:, None] * dx_dsigma * dsigma_dt[:, None] - x
    velocity = D.net(x * (1 - t)[:, None], 1000 * t)
    scale = expected.abs().max()
    torch.testing.assert_close(velocity, expected, rtol=0, atol=1e4 * EPS64 * scale)


def test_loss_at_the_exact_velocity_is_the_irreducible_posterior_variance():
    """Per sample, ||u* - (eps - x0)||^2 = ||E[x0|x_t] - x0||^2 / t^2, so the flow-matching loss of the exact
    velocity equals the x0 loss of the exact denoiser weighted by 1/t^2 (exactly), and its mean over draws is
    the posterior variance tr Cov[x0 | x_t] / (d t^2) (for one Gaussian component, in closed form)."""
    dim = 4
    mixture = random_mixture(dim, 1, seed=5)
    process = make_process("flow")
    D = Denoiser(ExactVelocity(mixture), process, "velocity")
    g = torch.Generator().manual_seed(6)
    n, t0 = 20000, 0.4
    t = torch.full((n,), t0, dtype=torch.float64)
    x0 = mixture.sample(n, g)[0]
    noise = torch.randn(n, dim, generator=g, dtype=torch.float64)
    loss = denoising_loss(D, x0, t, noise)
    sigma = torch.full((n,), t0 / (1 - t0), dtype=torch.float64)
    x0_loss = (mixture(x0 + sigma[:, None] * noise, sigma) - x0).pow(2).mean(1)
    torch.testing.assert_close(loss, x0_loss / t0**2, rtol=1e6 * EPS64, atol=0)
    cov = mixture.covs[0]
    s2 = float(sigma[0]) ** 2
    posterior = cov - cov @ torch.linalg.solve(cov + s2 * torch.eye(dim, dtype=torch.float64), cov)
    irreducible = torch.trace(posterior) / (dim * t0**2)
    stderr = loss.std() / math.sqrt(n)
    assert abs(loss.mean() - irreducible) < 5 * stderr


def test_samplers_drive_the_flow_denoiser_to_the_mixture():
    """Heun on the flow's sigma grid with the velocity denoiser: the same trajectory as with the exact
    denoiser (to float tolerance), ending on the mixture (its mean and covariance, within sampling error)."""
    mixture, process, D = _setup(dim=2, seed=4)
    g = torch.Generator().manual_seed(7)
    sigmas = sigma_grid("karras", process, 40)
    x_T = sigmas[0] * torch.randn(4000, 2, generator=g, dtype=torch.float64)
    ours, exact = heun(D, x_T.clone(), sigmas), heun(mixture, x_T.clone(), sigmas)
    torch.testing.assert_close(ours, exact, rtol=0, atol=1e6 * EPS64 * float(sigmas[0]))
    n = len(ours)
    std = mixture.covariance().diagonal().sqrt()
    assert torch.all((ours.mean(0) - mixture.mean()).abs() < 5 * std / math.sqrt(n))
    torch.testing.assert_close(torch.cov(ours.T), mixture.covariance(), rtol=0.1, atol=0.05 * float(std.max()) ** 2)
