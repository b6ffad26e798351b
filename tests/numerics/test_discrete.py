"""Categorical diffusion against exact answers on a tiny Markov chain (3 symbols, length 4: 81 sequences)."""
import math

import pytest
import torch

from unnoise.discrete.exact import MarkovChainReference, _reverse_table, all_sequences, sampler_distribution
from unnoise.discrete.loss import diffusion_loss, estimate_elbo, sample_times
from unnoise.discrete.process import make_process
from unnoise.discrete.random import CounterUniforms, categorical
from unnoise.discrete.sample import FREE, sample_tokens
from unnoise.errors import UnnoiseError

EPS64 = torch.finfo(torch.float64).eps
KINDS = ["absorbing", "uniform"]
SCHEDULES = ["linear", "cosine"]


@pytest.fixture(scope="module")
def reference():
    return MarkovChainReference([0.5, 0.3, 0.2], [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]], length=4)


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Upper tail of Pearson's statistic with len(probs) - 1 degrees of freedom."""
    expected = counts.sum() * probs
    statistic = ((counts - expected) ** 2 / expected).sum()
    dof = torch.tensor((len(probs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, statistic / 2))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_schedule_endpoints_are_exact(schedule, dtype):
    process = make_process("absorbing", 3, schedule)
    assert float(process.alpha(torch.tensor(0.0, dtype=dtype))) == 1.0
    assert float(process.alpha(torch.tensor(1.0, dtype=dtype))) == 0.0
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    alpha = process.alpha(t)
    assert bool((alpha[1:] < alpha[:-1]).all())
    h = 1e-6
    inner = t[1:-1]
    numeric = (process.alpha(inner + h) - process.alpha(inner - h)) / (2 * h)
    assert torch.allclose(process.schedule.alpha_derivative(inner), numeric, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_loss_integrand_equals_sequence_level_ctmc(reference, kind, schedule):
    """The x_0-parameterised loss equals the CTMC bound computed from enumerated marginal ratios p_t(y)/p_t(x)."""
    process = make_process(kind, 3, schedule)
    for t in (0.05, 0.5, 0.95):
        mine, direct = reference.expected_loss(process, t), reference.ctmc_integrand(process, t)
        assert torch.allclose(mine, direct, rtol=0, atol=2000 * EPS64 * float(direct.abs().max()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_continuous_elbo_with_exact_posterior_equals_nll(reference, kind, schedule):
    """In continuous time one token changes at a time, so the reverse CTMC built from the exact posterior is the
    exact time reversal and the bound is tight: ELBO(x_0) = -log p(x_0) for every sequence (hence also >=)."""
    process = make_process(kind, 3, schedule)
    elbo, nll = reference.continuous_elbo(process, nodes=40), -reference.log_probs
    tolerance = 1e-8 * float(nll.max())  # Gauss-Legendre error of the uniform integral; absorbing is exact
    assert float((elbo - nll).abs().max()) < tolerance
    assert bool((elbo >= nll - tolerance).all())


def test_absorbing_closed_form_equals_quadrature_and_nll(reference):
    closed = reference.absorbing_closed_form()
    nll = -reference.log_probs
    scale = float(nll.max())
    assert torch.allclose(closed, nll, rtol=0, atol=200 * EPS64 * scale)
    quadrature = reference.continuous_elbo(make_process("absorbing", 3, "cosine"), nodes=16)
    assert torch.allclose(quadrature, closed, rtol=0, atol=2000 * EPS64 * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_discrete_time_bound_bounds_its_model_and_tightens(reference, kind):
    """The D3PM bound with T steps bounds -log of the T-step sampler's own distribution for every sequence; in
    expectation over the data it exceeds the entropy and falls towards it as T grows."""
    process = make_process(kind, 3, "linear")
    entropy = float((-reference.log_probs * reference.probs).sum())
    expected = []
    for steps in (1, 4, 16):
        bound = reference.discrete_time_elbo(process, steps)
        model_nll = -torch.log(sampler_distribution(reference, process, steps))
        assert bool((bound >= model_nll - 1000 * EPS64 * float(model_nll.max())).all())
        expected.append(float((bound * reference.probs).sum()))
    assert entropy < expected[2] < expected[1] < expected[0]
    assert expected[2] - entropy < 0.1 * (expected[0] - entropy)  # the gap shrinks like 1 / T


@pytest.mark.parametrize("kind", KINDS)
def test_reverse_step_closed_form_matches_matrix_form(reference, kind):
    process = make_process(kind, 3, "cosine")
    s, t = 0.3, 0.55
    noisy = all_sequences(process.input_size, 4)
    posterior = reference.posterior_table(process, t)
    times = torch.full((len(noisy),), t, dtype=torch.float64)
    closed = process.reverse_probs(posterior, noisy, times, torch.full_like(times, s))
    table = _reverse_table(process, s, t)  # (K, I, I)
    generic = torch.einsum("nlc,nlcb->nlb", posterior, table[:, noisy, :].permute(1, 2, 0, 3))
    assert torch.allclose(closed, generic, rtol=0, atol=200 * EPS64)
    assert torch.allclose(closed.sum(-1), torch.ones_like(closed[..., 0]), rtol=0, atol=200 * EPS64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["stratified", "antithetic", "iid"])
def test_monte_carlo_loss_is_unbiased(reference, kind, method):
    """diffusion_loss (random t, random corruption) averages to the exact ELBO, here the data entropy."""
    process = make_process(kind, 3, "linear")
    generator = torch.Generator().manual_seed(7)
    rows = torch.multinomial(reference.probs, 256, replacement=True, generator=generator)
    x0 = reference.sequences[rows]
    losses = diffusion_loss(reference.model(process), process, x0, generator, time_sampling=method)
    entropy = float((-reference.log_probs * reference.probs).sum())
    error = float(losses.std()) / math.sqrt(len(losses))
    assert abs(float(losses.mean()) - entropy) < 4 * error


def test_time_sampling_is_stratified_and_antithetic():
    generator = torch.Generator().manual_seed(0)
    t = sample_times(8, generator, "stratified")
    assert sorted((t * 8).floor().long().tolist()) == list(range(8))
    t = sample_times(8, generator, "antithetic")
    assert torch.allclose(t[:4] + t[4:], torch.ones(4, dtype=torch.float64))


def test_estimate_elbo_reports_standard_error(reference):
    process = make_process("absorbing", 3, "linear")
    mean, error = estimate_elbo(reference.model(process), process, reference.sequences[:5], 64,
                                torch.Generator().manual_seed(1))
    nll = -reference.log_probs[:5]
    assert bool(((mean - nll).abs() < 5 * error + 1e-12).all())


def test_categorical_is_float64_exact_in_the_tail():
    probs = torch.tensor([1e-12, 0.0, 1e-3, 1.0 - 1e-3 - 1e-12], dtype=torch.float64)
    draws = categorical(probs.expand(200_000, 4), CounterUniforms(range(200_000)).uniform(0, ()))
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == 0
    assert abs(float(counts[2]) - 200.0) < 4 * math.sqrt(200.0)
    assert int(categorical(probs, torch.tensor(1.0 - 2.0 ** -53, dtype=torch.float64))) == 3


def test_counter_uniforms_are_per_sample():
    batch = CounterUniforms([11, 12, 13]).uniform(5, (7,))
    alone = CounterUniforms([12]).uniform(5, (7,))
    assert torch.equal(batch[1:2], alone)
    many = CounterUniforms(range(1000)).uniform(3, (20,)).flatten()
    counts = torch.histc(many.float(), bins=20, min=0, max=1).double()
    assert chi_square_p_value(counts, torch.full((20,), 0.05, dtype=torch.float64)) > 0.001


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_draws_its_exact_distribution(reference, kind):
    """With 8 steps the ancestral sampler's output law is computed exactly by enumeration; 20,000 draws match it."""
    process = make_process(kind, 3, "linear")
    samples = sample_tokens(reference.model(process), process, range(20_000), 4, 8)
    counts = torch.bincount(reference.index_of(samples), minlength=81).double()
    assert chi_square_p_value(counts, sampler_distribution(reference, process, 8)) > 0.01


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_matches_the_data(reference, kind):
    """With 128 steps the sampler's law is within 0.5% of the data (exact) and 20,000 draws pass chi-square."""
    process = make_process(kind, 3, "linear")
    law = sampler_distribution(reference, process, 128)
    assert 0.5 * float((law - reference.probs).abs().sum()) < 0.005
    samples = sample_tokens(reference.model(process), process, range(100, 20_100), 4, 128)
    counts = torch.bincount(reference.index_of(samples), minlength=81).double()
    assert chi_square_p_value(counts, reference.probs) > 0.01


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["ancestral", "top_confidence_heuristic"])
def test_sampler_is_batch_invariant(reference, kind, method):
    if method == "top_confidence_heuristic" and kind == "uniform":
        pytest.skip("confidence ordering needs the absorbing process")
    process = make_process(kind, 3, "cosine")
    model = reference.model(process)
    seeds = [5, 9, 2, 40, 41]
    batch = sample_tokens(model, process, seeds, 4, 6, method=method)
    singles = torch.cat([sample_tokens(model, process, [seed], 4, 6, method=method) for seed in seeds])
    assert torch.equal(batch, singles)
    reordered = sample_tokens(model, process, seeds[::-1], 4, 6, method=method)
    assert torch.equal(reordered, batch.flip(0))


def test_infill_keeps_given_tokens_and_samples_the_conditional(reference):
    process = make_process("absorbing", 3, "linear")
    template = torch.tensor([0, FREE, FREE, 2])
    samples = sample_tokens(reference.model(process), process, range(5000), 4, 128, template=template)
    assert bool((samples[:, 0] == 0).all()) and bool((samples[:, 3] == 2).all())
    consistent = (reference.sequences[:, 0] == 0) & (reference.sequences[:, 3] == 2)
    conditional = reference.probs[consistent] / reference.probs[consistent].sum()
    counts = torch.bincount(reference.index_of(samples), minlength=81).double()[consistent]
    assert chi_square_p_value(counts, conditional) > 0.01


def test_uniform_infill_and_confidence_sampler_keep_given_tokens(reference):
    template = torch.tensor([FREE, 1, FREE, 1])
    uniform = make_process("uniform", 3, "linear")
    out = sample_tokens(reference.model(uniform), uniform, range(50), 4, 16, template=template)
    assert bool((out[:, [1, 3]] == 1).all())
    absorbing = make_process("absorbing", 3, "linear")
    out = sample_tokens(reference.model(absorbing), absorbing, range(50), 4, 3, template=template,
                       method="top_confidence_heuristic")
    assert bool((out[:, [1, 3]] == 1).all()) and bool((out < 3).all())


def test_sampler_rejects_bad_requests(reference):
    uniform = make_process("uniform", 3, "linear")
    with pytest.raises(UnnoiseError, match="absorbing"):
        sample_tokens(reference.model(uniform), uniform, [0], 4, 4, method="top_confidence_heuristic")
    with pytest.raises(UnnoiseError, match="template"):
        sample_tokens(reference.model(uniform), uniform, [0], 4, 4, template=torch.tensor([0, 1, 7, FREE]))
    with pytest.raises(UnnoiseError):
        make_process("gaussian", 3)
