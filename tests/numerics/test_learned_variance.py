"""Learned variances: the hybrid loss's stop-gradient, importance sampling of t, ancestral sampling with
the network's variances, the resume state, and `unnoise eval --nll` with its refusals."""
import json

import pytest
import torch
from torch import nn

from unnoise.cli.main import main
from unnoise.exact import ring
from unnoise.losses import denoising_loss
from unnoise.nn import build_network
from unnoise.param import Denoiser
from unnoise.process import make_process
from unnoise.sample import generate
from unnoise.sample.sde import ddpm_ancestral
from unnoise.train.timesteps import LossAwareTimesteps
from unnoise.vlb import chain_log_variance

TINY = ["--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2",
        "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "data.options.n=300"]
HYBRID = ["--set", "model.learned_variance=true", "--set", "train.vlb_weight=0.001",
          "--set", "train.density=importance"]


class FixedVariance:
    """The exact ring denoiser with a constant variance output v."""

    learned_variance = True

    def __init__(self, v: float):
        self.gm, self.v = ring(), v

    def denoise_with_variance(self, x, sigma, cond=None):
        return self.gm.posterior_mean(x, sigma), torch.full_like(x, self.v)

    def __call__(self, x, sigma, cond=None):
        return self.denoise_with_variance(x, sigma, cond)[0]


def test_learned_variance_at_v_minus_one_is_the_posterior_step():
    sigmas = torch.tensor([80.0, 10.0, 2.0, 0.5, 0.1, 0.0], dtype=torch.float64)
    seeds = range(8)
    learned = generate(FixedVariance(-1.0), (2,), sigmas, ddpm_ancestral, seeds=seeds)
    plain = generate(ring(), (2,), sigmas, ddpm_ancestral, seeds=seeds)
    torch.testing.assert_close(learned, plain, rtol=1e-5, atol=1e-5)
    larger = generate(FixedVariance(1.0), (2,), sigmas, ddpm_ancestral, seeds=seeds)
    assert not torch.allclose(larger, plain)


def test_chain_variances_interpolate_between_beta_tilde_and_beta():
    process = make_process("ddpm")
    t = torch.tensor([0, 1, 500, 999])
    like = torch.zeros(4, 3)
    small = chain_log_variance(process, t, "fixed_small", like=like)
    large = chain_log_variance(process, t, "fixed_large", like=like)
    v = torch.zeros(4, 3, dtype=torch.float64)
    torch.testing.assert_close(chain_log_variance(process, t, "learned", v - 1), small.expand(4, 3))
    torch.testing.assert_close(chain_log_variance(process, t[1:], "learned", v[1:] + 1), large[1:].expand(3, 3))
    torch.testing.assert_close(chain_log_variance(process, t, "learned", v), (small + chain_log_variance(
        process, t, "learned", v + 1)) / 2)


def _learned_denoiser(seed=0):
    torch.manual_seed(seed)
    net = build_network("mlp", {"in_dim": 2, "out_dim": 4, "hidden": 32, "depth": 2})
    for p in net.parameters():  # a non-trivial network (the head starts at zero)
        nn.init.normal_(p, std=0.3)
    return Denoiser(net, make_process("ddpm"), "eps", learned_variance=True)


def test_hybrid_loss_reaches_the_mean_only_through_l_simple():
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    t = torch.randint(0, 1000, (16,), generator=torch.Generator().manual_seed(1)).double()
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))
    grads = {}
    for weight in (0.0, 0.001):
        d = _learned_denoiser()
        denoising_loss(d, x0, t, noise, vlb_weight=weight).mean().backward()
        head = d.net.out[-1]
        grads[weight] = (head.weight.grad.clone(), head.bias.grad.clone())
    mean_rows = slice(0, 2)  # outputs 0..1 predict eps, 2..3 are v
    torch.testing.assert_close(grads[0.001][0][mean_rows], grads[0.0][0][mean_rows])
    assert grads[0.0][1][2:].abs().sum() == 0 and grads[0.001][1][2:].abs().sum() > 0


def test_importance_sampling_starts_uniform_and_keeps_the_objective_unbiased():
    sampler = LossAwareTimesteps(steps=4, history=3)
    torch.testing.assert_close(sampler.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    for _ in range(3):
        sampler.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    p = sampler.probabilities()
    assert p[3] > p[0] and abs(float(p.sum()) - 1) < 1e-12
    t, w = sampler.sample(200_000, torch.Generator().manual_seed(0))
    losses = t + 1.0  # L_t = t + 1: the importance-weighted mean must equal the uniform mean 2.5
    assert abs(float((w * losses).mean()) - 2.5) < 0.02


def test_hybrid_run_resumes_and_eval_reports_both_estimates(tmp_path, capsys):
    run = tmp_path / "hybrid"
    assert main(["train", "--preset", "toy2d", "--steps", "12", "--out", str(run), *TINY, *HYBRID,
                 "--set", "train.checkpoint_every=6"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--preset", "toy2d", "--steps", "12", "--out", str(straight), *TINY, *HYBRID]) == 0
    resumed = tmp_path / "resumed"
    assert main(["train", "--preset", "toy2d", "--steps", "6", "--out", str(resumed), *TINY, *HYBRID]) == 0
    assert main(["train", "--resume", "--steps", "12", "--out", str(resumed)]) == 0
    from safetensors.torch import load_file

    a = load_file(str(straight / "checkpoint" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the loss history is part of the resumed state
    capsys.readouterr()
    assert main(["eval", str(run), "--nll", "--n", "8", "--batch", "8"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["vlb"]["variance"] == "learned" and out["vlb"]["timesteps"] == 1000
    assert out["ode"]["divergence"] == "exact" and out["ode"]["bpd_stderr"] > 0
    assert json.loads((run / "eval_nll.json").read_text())["n"] == 8


def test_eval_says_which_estimate_is_unavailable(tmp_path, capsys):
    run = tmp_path / "plain"
    assert main(["train", "--preset", "toy2d", "--steps", "3", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--nll", "--n", "4"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "no learned variances" in out["vlb"]["unavailable"] and "bpd" not in out["vlb"]
    assert out["ode"]["bpd"] == out["ode"]["bpd"]  # the ODE estimate is still there (not NaN)


@pytest.mark.parametrize("setting, fragment", [
    (["--set", "model.learned_variance=true", "--set", "model.process=edm", "--set", "model.prediction=edm"],
     "needs model.process=ddpm"),
    (["--set", "train.vlb_weight=0.001"], "needs model.learned_variance=true"),
])
def test_bad_variance_configs_are_one_line_errors(tmp_path, capsys, setting, fragment):
    assert main(["train", "--preset", "toy2d", "--steps", "1", "--out", str(tmp_path / "r"), *TINY, *setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
