"""Trajectory-diffusion transforms against exact answers: an exact Gaussian denoiser over (6, L) signals,
inpainting exact in the samples of several samplers, policy guidance equal to the Gaussian product of
the denoiser's estimate and pi^lambda, lambda = 0 identical to unguided, value guidance's sigma^2 grad J."""
import numpy as np
import pytest
import torch

from unnoise.grids import karras
from unnoise.planning.dataset import ACTION, TrajectoryScale, trajectory_windows
from unnoise.planning.guidance import Inpainted, PolicyGuided, ValueGuided
from unnoise.planning.maze import SPEED_LIMIT, make_maze
from unnoise.planning.policy import GoalBound, GoalPolicy, relabelled
from unnoise.sample import get_sampler

SAMPLERS = ("euler", "heun", "dpmpp_2m")
SHAPE = (6, 16)


class GaussianDenoiser:
    """The exact denoiser of x0 ~ N(m, S) over flattened (6, L) samples:
    D(x, sigma) = m + S (S + sigma^2 I)^-1 (x - m)."""

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor):
        self.mean, self.covariance = mean, covariance

    def __call__(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        eye = torch.eye(len(self.covariance), dtype=x.dtype)
        out = []
        for row, level in zip((x - self.mean).flatten(1), sigma):
            out.append(self.covariance @ torch.linalg.solve(self.covariance + level**2 * eye, row))
        return self.mean + torch.stack(out).reshape(x.shape)

    def parameters(self):
        return iter(())


class LinearPolicy:
    """pi(a | s) = N(W s, tau^2 I) per time step, on (B, 4, L) states and (B, 2, L) actions."""

    def __init__(self, weight: torch.Tensor, std: float):
        self.weight, self.std = weight, std

    def mean(self, states):
        return torch.einsum("as,bsl->bal", self.weight.to(states.dtype), states)

    def log_prob(self, states, actions):
        return -0.5 * ((actions - self.mean(states)) ** 2).sum(1) / self.std**2


def constraints(batch: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(3)
    known = torch.rand(batch, *SHAPE, generator=generator, dtype=dtype) * 2 - 1
    mask = torch.zeros(batch, *SHAPE, dtype=torch.bool)
    mask[:, :4, 0] = True  # the start state
    mask[:, :2, -1] = True  # the goal position
    return known, mask


def draw(D, sampler: str, seed: int = 0, dtype=torch.float64):
    sigmas = karras(12, 0.002, 80.0).to(dtype)
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=dtype) * sigmas[0]
    return get_sampler(sampler)(D, x, sigmas)


def gaussian(dtype=torch.float64):
    """Channels correlated by a random SPD matrix, time by a squared-exponential kernel (a Kronecker product)."""
    mean = torch.linspace(-0.5, 0.5, SHAPE[0] * SHAPE[1], dtype=dtype).reshape(SHAPE)
    a = torch.randn(SHAPE[0], SHAPE[0], generator=torch.Generator().manual_seed(9), dtype=dtype)
    channels = a @ a.T / SHAPE[0] + 0.1 * torch.eye(SHAPE[0], dtype=dtype)
    t = torch.arange(SHAPE[1], dtype=dtype)
    time = torch.exp(-((t[:, None] - t[None]) ** 2) / 8.0) + 1e-3 * torch.eye(SHAPE[1], dtype=dtype)
    return GaussianDenoiser(mean, 0.2 * torch.kron(channels, time))


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inpainted_entries_come_out_exact(sampler, replacement, assert_close_eps):
    known, mask = constraints(4)
    noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    D = Inpainted(gaussian(), known, mask, noise if replacement else None)
    x = draw(D, sampler)
    assert_close_eps(x[mask], known[mask], ulps=8, scale=80.0, what=f"{sampler}: ")  # rounding of sigma_max
    assert torch.equal(D.impose(x)[mask], known[mask])
    free = draw(gaussian(), sampler)
    assert not torch.allclose(x[~mask], free[~mask])  # the constraints do move the other entries


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_policy_guidance_with_lambda_zero_equals_unguided(sampler):
    known, mask = constraints(4)
    policy = LinearPolicy(torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64), 0.3)
    guided = draw(Inpainted(PolicyGuided(gaussian(), policy, 0.0), known, mask), sampler)
    plain = draw(Inpainted(gaussian(), known, mask), sampler)
    assert torch.equal(guided, plain)
    tilted = draw(Inpainted(PolicyGuided(gaussian(), policy, 2.0), known, mask), sampler)
    assert (tilted - plain)[:, ACTION].abs().max() > 1e-3  # lambda > 0 does guide


@pytest.mark.parametrize("weight,sigma", [(0.5, 0.1), (2.0, 1.0), (1.0, 80.0)])
def test_policy_guidance_is_the_gaussian_product(weight, sigma, assert_close_eps):
    """On the action channels: (tau^2 D + lambda sigma^2 mu) / (tau^2 + lambda sigma^2), the mean of
    N(D, sigma^2) * pi^lambda for a Gaussian policy; the state channels are D's."""
    D, tau = gaussian(), 0.3
    policy = LinearPolicy(torch.randn(2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64), tau)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * sigma
    sigmas = torch.full((3,), sigma, dtype=torch.float64)
    out, d = PolicyGuided(D, policy, weight)(x, sigmas), D(x, sigmas)
    mu = policy.mean(d[:, :4])
    expected = (tau**2 * d[:, ACTION] + weight * sigma**2 * mu) / (tau**2 + weight * sigma**2)
    assert_close_eps(out[:, ACTION], expected, ulps=16)
    assert torch.equal(out[:, :4], d[:, :4])


def test_replacement_feeds_the_known_entries_at_the_current_level():
    """With noise e the network's input holds y + sigma e on the mask and x elsewhere."""
    known, mask = constraints(2)
    noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    seen = []

    def spy(x, sigma, cond=None):
        seen.append(x.clone())
        return x

    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    Inpainted(spy, known, mask, noise)(x, torch.tensor([0.5, 3.0], dtype=torch.float64))
    level = known + torch.tensor([0.5, 3.0], dtype=torch.float64).reshape(-1, 1, 1) * noise
    assert torch.equal(seen[0][mask], level[mask]) and torch.equal(seen[0][~mask], x[~mask])


def test_value_guidance_adds_sigma_squared_times_the_gradient(assert_close_eps):
    D, w = gaussian(), torch.randn(*SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sigmas = torch.tensor([0.5, 2.0], dtype=torch.float64)
    out = ValueGuided(D, lambda z: (z * w).flatten(1).sum(1), 0.3)(x, sigmas)
    assert_close_eps(out, D(x, sigmas) + 0.3 * sigmas.reshape(-1, 1, 1) ** 2 * w, ulps=8)


def test_goal_bound_policy_matches_the_per_step_log_likelihood(assert_close_eps):
    torch.manual_seed(0)
    policy = GoalPolicy(hidden=16, depth=1)
    states, actions, goals = torch.randn(2, 4, 5), torch.rand(2, 2, 5) * 2 - 1, torch.randn(2, 2)
    with torch.no_grad():
        bound = GoalBound(policy, goals).log_prob(states, actions)
        for b in range(2):
            per_step = policy.log_prob(states[b].T, actions[b].T, goals[b].expand(5, 2))
            assert_close_eps(bound[b], per_step, ulps=16)


def test_trajectory_scale_round_trip_and_windows():
    maze = make_maze("medium")
    scale = TrajectoryScale.for_maze(maze)
    assert scale.centre == (3.5, 3.5) and scale.half_extent == 3.5
    walks = {"positions": np.random.default_rng(0).uniform(1, 6, size=(2, 41, 2)),
             "velocities": np.random.default_rng(1).uniform(-2, 2, size=(2, 41, 2)),
             "actions": np.random.default_rng(2).uniform(-1, 1, size=(2, 40, 2))}
    x = trajectory_windows(walks, scale, horizon=16, stride=8)
    assert x.shape == (2 * 4, 6, 16)  # windows at 0, 8, 16, 24 of 40 steps
    back = scale.decode(x[1])  # walk 1's first window (windows are stacked start by start)
    np.testing.assert_allclose(back["positions"], walks["positions"][1, :16], rtol=0, atol=1e-14)
    np.testing.assert_allclose(back["velocities"], walks["velocities"][1, :16], rtol=0, atol=1e-14)
    assert np.array_equal(x[1, ACTION], walks["actions"][1, :16].T)
    assert np.abs(x[:, 2:4]).max() <= np.abs(walks["velocities"]).max() / SPEED_LIMIT + 1e-15


def test_hindsight_goals_are_later_positions_of_the_same_window():
    windows = torch.randn(3, 6, 10)
    states, actions, goals = relabelled(windows, seed=0)
    assert states.shape == (27, 4) and actions.shape == (27, 2)
    for row in range(27):
        b, t = divmod(row, 9)
        later = windows[b, :2, t + 1:].T  # positions after step t
        assert (later == goals[row]).all(1).any()
        assert torch.equal(states[row], windows[b, :4, t])
