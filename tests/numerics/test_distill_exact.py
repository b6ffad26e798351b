"""Progressive distillation and consistency models against exact Gaussian-mixture teachers: the progressive
target is the teacher's two DDIM steps, a student equal to it samples the teacher's 2N-step result in N
steps, the consistency boundary condition holds bit for bit, the distillation target is one Heun step."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import random_mixture
from unnoise.nn import build_network
from unnoise.objectives.consistency import boundaries, curriculum, heun_between, index_probabilities, pseudo_huber
from unnoise.objectives.progressive import (check_student_prediction, ddim_step, progressive_target,
                                            two_step_weights)
from unnoise.param import Denoiser
from unnoise.process import make_process
from unnoise.sample import ddim, heun
from unnoise.sample.consistency import ConsistencyDenoiser, consistency_sample, consistency_scalings, nested_karras


def levels(batch, *values):
    return [torch.full((batch,), v, dtype=torch.float64) for v in values]


@pytest.fixture
def teacher():
    return random_mixture(dim=3, n_components=4, seed=3)


def test_progressive_target_is_the_teachers_two_ddim_steps(teacher, assert_close_eps):
    x = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5.0
    s, s_mid, s_next = 5.0, 1.3, 0.2
    two_steps = ddim(teacher, x, torch.tensor([s, s_mid, s_next], dtype=torch.float64))
    target = progressive_target(teacher, x, *levels(64, s, s_mid, s_next))
    one_step = ddim_step(x, target, *levels(64, s, s_next))
    assert_close_eps(one_step, two_steps, ulps=16, scale=float(x.abs().max()))


def test_progressive_target_at_the_last_step_is_the_second_estimate(teacher):
    x = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma, sigma_mid, zero = levels(16, 0.8, 0.1, 0.0)
    w1, w2 = two_step_weights(sigma, sigma_mid, zero)
    assert torch.equal(w1, torch.zeros(16, dtype=torch.float64)) and torch.equal(w2, torch.ones(16, dtype=torch.float64))
    x_mid = ddim_step(x, teacher(x, sigma), sigma, sigma_mid)
    assert torch.equal(progressive_target(teacher, x, sigma, sigma_mid, zero), teacher(x_mid, sigma_mid))


def test_progressive_target_is_stable_where_the_direct_division_is_not(teacher):
    """Levels 1e-4 apart: Eq. 8's (x'' - r x) / (1 - r) in float32 loses ~1/(1 - r) of its digits; the convex
    form keeps float32 accuracy."""
    x64 = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.5
    sigma, sigma_mid, sigma_next = levels(256, 0.5, 0.5 * (1 - 5e-5), 0.5 * (1 - 1e-4))
    reference = progressive_target(teacher, x64, sigma, sigma_mid, sigma_next)
    x32 = x64.float()
    convex = progressive_target(teacher, x32, sigma, sigma_mid, sigma_next)
    x_mid = ddim_step(x32, teacher(x32, sigma), sigma, sigma_mid)
    x_next = ddim_step(x_mid, teacher(x_mid, sigma_mid), sigma_mid, sigma_next)
    r = float(sigma_next[0] / sigma[0])
    direct = (x_next - r * x32) / (1 - r)
    eps, scale = torch.finfo(torch.float32).eps, float(reference.abs().max())
    assert float((convex - reference).abs().max()) <= 64 * eps * scale
    assert float((direct.double() - reference).abs().max()) > 1000 * eps * scale


def test_a_student_equal_to_the_target_takes_the_teachers_2n_steps_in_n(teacher, assert_close_eps):
    n = 4
    fine, coarse = nested_karras(2 * n, 0.002, 80.0), nested_karras(n, 0.002, 80.0)
    assert torch.equal(fine[::2], coarse)

    def student(x, sigma, cond=None):  # the exact target at each of its own grid levels
        i = int(torch.nonzero(coarse == float(sigma[0]))[0])
        mid, nxt = levels(len(x), float(fine[2 * i + 1]), float(coarse[i + 1]))
        return progressive_target(teacher, x, sigma, mid, nxt)

    x = 80.0 * torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert_close_eps(ddim(student, x, coarse), ddim(teacher, x, fine), ulps=64, scale=float(fine[0]))


def test_eps_students_are_refused_for_one_or_two_steps():
    for steps in (1, 2):
        with pytest.raises(UnnoiseError, match="needs x0, v or edm"):
            check_student_prediction("eps", steps)
    check_student_prediction("eps", 4)
    check_student_prediction("v", 1)
    check_student_prediction("edm", 1)


@pytest.mark.parametrize("process, prediction", [("edm", "edm"), ("ddpm", "eps"), ("vp", "v"), ("ddpm", "x0")])
def test_consistency_boundary_condition_is_exact(process, prediction):
    torch.manual_seed(0)
    net = build_network("mlp", {"in_dim": 5, "hidden": 32, "depth": 2})
    p = make_process(process)
    f = ConsistencyDenoiser(net, p, prediction, 0.5, sigma_min=p.sigma_min)
    x = torch.randn(16, 5) * 3
    out = f(x, torch.full((16,), p.sigma_min, dtype=torch.float64))
    assert torch.equal(out, x)
    above = f(x, torch.full((16,), p.sigma_min * 1.5, dtype=torch.float64))
    assert not torch.equal(above, x)  # the network does act away from the boundary


def test_consistency_scalings_on_an_edm_network_are_song_et_al(assert_close_eps):
    torch.manual_seed(1)
    net = build_network("mlp", {"in_dim": 4, "hidden": 16, "depth": 1})
    p = make_process("edm")
    f = ConsistencyDenoiser(net, p, "edm", 0.5, sigma_min=0.002)
    x, sigma = torch.randn(8, 4, dtype=torch.float64), torch.linspace(0.01, 80, 8, dtype=torch.float64)
    net.double()
    c_skip, c_out = consistency_scalings(sigma, 0.002, 0.5)
    c_in, c_noise = 1 / (sigma**2 + 0.25).sqrt(), 250 * sigma.log()
    with torch.no_grad():
        expected = c_skip[:, None] * x + c_out[:, None] * net(c_in[:, None] * x, c_noise, None)
        assert_close_eps(f(x, sigma), expected, ulps=64)


def test_consistency_distillation_target_is_one_teacher_heun_step(teacher, assert_close_eps):
    x = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2.0
    high, low = 2.0, 1.4
    expected = heun(teacher, x, torch.tensor([high, low], dtype=torch.float64))
    got = heun_between(teacher, x, *levels(32, high, low))
    assert_close_eps(got, expected, ulps=16, scale=float(x.abs().max()))


def test_consistency_sampler_one_step_and_renoising(teacher):
    """One level: f(sigma_max z). Two levels: f(f(sigma_max z) + sqrt(s1^2 - sigma_min^2) z')."""
    class Exact:
        process = make_process("edm")

        def __call__(self, x, sigma, cond=None):
            return teacher(x, sigma)

    f, z = Exact(), torch.randn(8, 3, dtype=torch.float64)
    grid = nested_karras(2, 0.002, 80.0)
    z2 = torch.randn(8, 3, dtype=torch.float64)
    draws = iter([z2])
    out = consistency_sample(f, 80.0 * z, grid, noise=lambda like: next(draws))
    first = teacher(80.0 * z, torch.full((8,), 80.0, dtype=torch.float64))
    renoised = first + math.sqrt(float(grid[1]) ** 2 - 0.002**2) * z2
    assert torch.equal(out, teacher(renoised, torch.full((8,), float(grid[1]), dtype=torch.float64)))
    assert torch.equal(consistency_sample(f, 80.0 * z, nested_karras(1, 0.002, 80.0)), first)


def test_consistency_schedule_pieces():
    b = boundaries(18, 0.002, 80.0)
    assert b[0] == 0.002 and b[-1] == 80.0 and bool((b[1:] > b[:-1]).all())
    assert [curriculum(k, 600, 10, 1280) for k in (0, 74, 75, 599)] == [11, 11, 21, 1281]
    assert curriculum(5, 100, 17, 17) == 18
    p = index_probabilities(b, "lognormal")
    assert len(p) == 17 and abs(float(p.sum()) - 1) < 1e-12 and int(p.argmax()) < 12
    a, c = torch.zeros(2, 4), torch.tensor([[0.0] * 4, [3.0, 4.0, 0.0, 0.0]])
    assert torch.allclose(pseudo_huber(a, c, 0.5), torch.tensor([0.0, math.sqrt(25.25) - 0.5]))


class LevelTable(torch.nn.Module):
    """A linear network for x0 prediction on the EDM process: out = g(sigma) x with one trainable scalar per
    known level (found by its noise input 250 ln sigma), initialised to the Gaussian teacher's g."""

    def __init__(self, sigmas, scale: float):
        super().__init__()
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        self.register_buffer("keys", 250 * sigmas.log())
        self.g = torch.nn.Parameter(scale**2 / (sigmas**2 + scale**2))

    def forward(self, x, noise_input, cond=None):
        index = (self.keys[None, :] - noise_input.to(torch.float64)[:, None]).abs().argmin(1)
        return self.g[index].to(x.dtype)[:, None] * x


class NoConditions:
    def from_batch(self, batch):
        return None

    def dropout(self, cond, p, generator):
        return None


def _train(objective, data, steps=150, lr=2e-3):
    """Adam with the learning rate decayed linearly to 0 (a one-parameter quadratic: no oscillation left)."""
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 - k / steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = objective.loss({"x": data}, g).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def test_linear_students_converge_to_their_exact_targets():
    """Gaussian data N(0, 0.5^2 I): the teacher is exact and every map is linear. A one-step progressive
    student trained with the objective reaches the teacher's two DDIM steps, and a one-step consistency
    student (boundaries sigma_min, sigma_max) reaches one teacher Heun step, to 1e-3 relative."""
    from unnoise.exact import GaussianMixture
    from unnoise.objectives.consistency import ConsistencyObjective
    from unnoise.objectives.progressive import ProgressiveObjective

    s, edm = 0.5, make_process("edm")
    gaussian = GaussianMixture(torch.zeros(1, 2), s**2 * torch.eye(2)[None])
    data = torch.randn(128, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * s
    student_grid, teacher_grid = nested_karras(1, 0.002, 80.0), nested_karras(2, 0.002, 80.0)
    student = Denoiser(LevelTable(student_grid[:1], s), edm, "x0", s)
    x = torch.ones(1, 2, dtype=torch.float64) * 80.0
    two_steps = float(ddim(gaussian, x, teacher_grid)[0, 0])
    with torch.no_grad():
        assert abs(float(ddim(student, x, student_grid)[0, 0]) / two_steps - 1) > 0.5  # the teacher's one step
    _train(ProgressiveObjective(student, gaussian, NoConditions(), student_grid, teacher_grid), data)
    with torch.no_grad():
        assert abs(float(ddim(student, x, student_grid)[0, 0]) / two_steps - 1) <= 1e-3

    recipe = {"sigma_max": 80.0, "rho": 7.0, "discretization_start": 1, "discretization_end": 1, "target_ema": 0.0,
              "index_density": "uniform", "weighting": "uniform", "p_mean": -1.1, "p_std": 2.0, "huber_c": 1e-4}
    f = ConsistencyDenoiser(LevelTable(torch.tensor([80.0]), s), edm, "x0", s, sigma_min=0.002)
    _train(ConsistencyObjective(f, gaussian, NoConditions(), recipe, 200), data, steps=200, lr=1e-2)
    heun_step = float(heun(gaussian, x, torch.tensor([80.0, 0.002], dtype=torch.float64))[0, 0])
    with torch.no_grad():
        assert abs(float(f(x, torch.tensor([80.0], dtype=torch.float64))[0, 0]) / heun_step - 1) <= 1e-3


def test_an_exact_four_step_student_beats_every_training_free_sampler_at_four_calls(teacher):
    """Two exact rounds (16 -> 8 -> 4 steps, each student equal to its target) give a 4-step student whose
    pathwise error to the reference ODE solution is below the best training-free sampler's at NFE 4."""
    from unnoise.exact import reference_ode_solution
    from unnoise.sample import DETERMINISTIC
    from unnoise.sample.plan import run_budget

    def student_of(parent, n):  # the exact n-step student of an (2n)-step parent
        fine, coarse = nested_karras(2 * n, 0.002, 80.0), nested_karras(n, 0.002, 80.0)

        def student(x, sigma, cond=None):
            i = int(torch.nonzero(coarse == float(sigma[0]))[0])
            mid, nxt = levels(len(x), float(fine[2 * i + 1]), float(coarse[i + 1]))
            return progressive_target(parent, x, sigma, mid, nxt)
        return student

    student = student_of(student_of(teacher, 8), 4)
    x = 80.0 * torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    reference = reference_ode_solution(teacher, x, 80.0, 1e-4, steps=400)
    error = lambda out: float((out - reference).norm(dim=1).mean())
    student_error = error(ddim(student, x, nested_karras(4, 0.002, 80.0)))
    free = {name: error(run_budget(name, teacher, x.clone(), nfe=4, process=make_process("edm")))
            for name in DETERMINISTIC if name not in ("auto", "progressive")}
    assert student_error < min(free.values()), (student_error, free)


def test_a_guided_teacher_is_what_the_student_learns(assert_close_eps):
    """model.distill.guidance w: the target is two DDIM steps of the classifier-free-guided exact teacher."""
    from unnoise.conditions import Conditions
    from unnoise.conditions.label import LabelCondition
    from unnoise.exact import GaussianMixture, LabelledMixture
    from unnoise.guide import cfg
    from unnoise.run.distill import guided_teacher

    class ByName(LabelledMixture):  # the exact class-conditional denoiser reading the named condition
        def __call__(self, x, sigma, cond=None):
            return super().__call__(x, sigma, None if cond is None else cond["label"])

    means = torch.tensor([[1.5, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    teacher = ByName(GaussianMixture(means, 0.1 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2)))
    conditions = Conditions([LabelCondition(2)])
    x = 3.0 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    cond = {"label": torch.arange(16) % 2}
    grid = torch.tensor([3.0, 0.7, 0.1], dtype=torch.float64)
    target = progressive_target(guided_teacher(teacher, conditions, 3.0), x, *levels(16, 3.0, 0.7, 0.1), cond)
    expected = ddim(cfg(teacher, 3.0, conditions.null), x, grid, cond=cond)
    assert_close_eps(ddim_step(x, target, *levels(16, 3.0, 0.1)), expected, ulps=16, scale=3.0)
    unguided = progressive_target(teacher, x, *levels(16, 3.0, 0.7, 0.1), cond)
    assert float((unguided - target).abs().max()) > 0.1
    with pytest.raises(UnnoiseError, match="model.distill.guidance=3.0: the teacher has no condition to guide"):
        guided_teacher(teacher, Conditions([]), 3.0)
