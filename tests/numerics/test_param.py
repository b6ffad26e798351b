"""Parameterization wrappers round-trip exactly; losses are zero for the ideal network and finite at SNR 0."""
import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.losses import denoising_loss, loss_weight
from unnoise.param import PREDICTIONS, Denoiser, x0_error_scales
from unnoise.process import make_process

PROCESSES = ["ddpm", "vp", "ve", "edm", "flow"]


class Oracle(torch.nn.Module):
    """A 'network' that outputs a fixed tensor, whatever its input."""

    def __init__(self):
        super().__init__()
        self.out = None
        self.seen = None

    def forward(self, x, noise_input, cond=None):
        self.seen = (x, noise_input)
        return self.out


def _batch(process, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 3, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, 4, generator=g, dtype=torch.float64)
    sigma = torch.logspace(-2, 1.5, n, dtype=torch.float64)
    return x0, eps, sigma


@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_round_trips_to_x0(process_name, prediction):
    """A network that outputs exactly the training target makes D(x0 + sigma eps, sigma) = x0."""
    process = make_process(process_name)
    oracle = Oracle()
    D = Denoiser(oracle, process, prediction)
    x0, eps, sigma = _batch(process)
    alpha, s = process.coefficients(sigma)
    oracle.out = D.target(x0, eps, alpha, s)
    x = x0 + sigma[:, None, None] * eps
    torch.testing.assert_close(D(x, sigma), x0, rtol=1e-10, atol=1e-10)
    # the training input equals the sampling input for the same state
    x_in, c = D.network_input(x0, eps, alpha, s)
    D(x, sigma)
    torch.testing.assert_close(x_in, oracle.seen[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(c, oracle.seen[1], rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_x0_error_scale(process_name, prediction):
    """k converts an output-space error to an x0 error: D(out + delta) - D(out) = k delta."""
    process = make_process(process_name)
    oracle = Oracle()
    D = Denoiser(oracle, process, prediction)
    x0, eps, sigma = _batch(process)
    alpha, s = process.coefficients(sigma)
    x = x0 + sigma[:, None, None] * eps
    delta = torch.full_like(x0, 1e-3)
    oracle.out = D.target(x0, eps, alpha, s)
    base = D(x, sigma)
    oracle.out = oracle.out + delta
    k2, snr_k2 = x0_error_scales(prediction, alpha, s, D.sigma_data)
    got = ((D(x, sigma) - base) / delta).pow(2)[:, 0, 0]
    torch.testing.assert_close(got, k2, rtol=1e-7, atol=0)
    torch.testing.assert_close(snr_k2, k2 * alpha**2 / s**2, rtol=1e-10, atol=0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_loss_zero_for_ideal_network_and_positive_otherwise(prediction):
    process = make_process("ddpm")
    oracle = Oracle()
    D = Denoiser(oracle, process, prediction)
    x0, eps, _ = _batch(process)
    t = torch.tensor([0.0, 10, 100, 400, 800, 999])
    alpha, s = process.alpha_s(t)
    oracle.out = D.target(x0, eps, alpha, s)
    for weighting in ("none", "min_snr", "edm"):
        assert torch.all(denoising_loss(D, x0, t, eps, weighting=weighting) == 0)
    oracle.out = oracle.out + 0.1
    assert torch.all(denoising_loss(D, x0, t, eps) > 0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_min_snr_is_finite_at_zero_terminal_snr(prediction):
    process = make_process("ddpm", zero_terminal_snr=True)
    D = Denoiser(Oracle(), process, prediction)
    t = torch.tensor([0.0, 500.0, 999.0])
    alpha, s = process.alpha_s(t)
    w = loss_weight(D, alpha, s, "min_snr", gamma=5.0)
    assert torch.all(torch.isfinite(w))
    snr = process.snr(t)
    expected = {"eps": torch.clamp(5.0 / snr, max=1.0), "score": torch.clamp(5.0 / snr, max=1.0),
                "x0": torch.clamp(snr, max=5.0), "v": torch.clamp(snr, max=5.0) / (snr + 1)}[prediction]
    torch.testing.assert_close(w, expected)


def test_min_snr_loss_finite_at_top_of_zero_snr_chain():
    process = make_process("ddpm", zero_terminal_snr=True)
    oracle = Oracle()
    D = Denoiser(oracle, process, "v")
    x0, eps, _ = _batch(process, n=2)
    oracle.out = torch.zeros_like(x0)
    loss = denoising_loss(D, x0, torch.tensor([999.0, 999.0]), eps, weighting="min_snr")
    assert torch.all(torch.isfinite(loss))
    x_in, c = D.network_input(x0, eps, *process.alpha_s(torch.tensor([999.0, 999.0])))
    torch.testing.assert_close(x_in, eps)  # pure noise at SNR 0
    assert torch.all(c == 999)


def test_edm_weighting_makes_edm_loss_unweighted():
    """With EDM preconditioning the EDM weighting lambda = 1 / c_out^2 is exactly 1 in F-space."""
    process = make_process("edm")
    D = Denoiser(Oracle(), process, "edm")
    sigma = torch.logspace(-2, 1.5, 5, dtype=torch.float64)
    w = loss_weight(D, *process.coefficients(sigma), "edm")
    torch.testing.assert_close(w, torch.ones_like(w))


def test_unknown_prediction_and_weighting():
    with pytest.raises(UnnoiseError, match="valid: edm, eps, score, v, velocity, x0"):
        Denoiser(Oracle(), make_process("ddpm"), "noise")
    D = Denoiser(Oracle(), make_process("ddpm"), "eps")
    with pytest.raises(UnnoiseError, match="loss weighting"):
        loss_weight(D, torch.ones(1), torch.ones(1), "p2")
