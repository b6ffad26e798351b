"""The sampler registry: every spec's call count is what its function really spends, budgets convert both
ways, options are checked, and `auto` is an entry that only the calibrated path can run."""
import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.exact import ring
from unnoise.grids import karras
from unnoise.process import make_process
from unnoise.sample import FIXED, SAMPLERS, generate, get_sampler, sampler_spec
from unnoise.sample.plan import plan_sampling

SMALL = {"annealed_langevin": {"steps_per_level": 3}, "langevin_pc": {"corrector_steps": 2}}


@pytest.mark.parametrize("name", FIXED)
def test_model_calls_match_the_function(name):
    gm, spec = ring(), SAMPLERS[name]
    for steps in (1, 4, 7):
        gm.calls = 0
        generate(gm, (2,), karras(steps, 0.01, 80.0), spec.bind(**SMALL.get(name, {})), seeds=range(3))
        assert gm.calls == spec.model_calls(steps, SMALL.get(name, {})), (name, steps)


@pytest.mark.parametrize("name", FIXED)
def test_steps_for_nfe_fits_the_budget(name):
    spec = SAMPLERS[name]
    for nfe in (5, 10, 33):
        steps = spec.steps_for_nfe(nfe, SMALL.get(name, {}))
        calls = spec.model_calls(steps, SMALL.get(name, {}))
        assert calls <= nfe or steps == 1
        assert steps == 1 or spec.model_calls(steps + 1, SMALL.get(name, {})) > nfe


def test_options_are_checked_and_auto_is_calibrated_only():
    with pytest.raises(UnnoiseError, match="eta does not apply to sampler 'euler'"):
        get_sampler("euler", eta=0.5)
    with pytest.raises(UnnoiseError, match="calibrated per model"):
        get_sampler("auto")
    with pytest.raises(UnnoiseError, match="unknown sampler 'plms'; valid: annealed_langevin, auto"):
        sampler_spec("plms")
    assert SAMPLERS["auto"].calibrated and "auto" not in FIXED


def test_plan_budget_meanings():
    gm, p = ring(), make_process("ddpm")
    heun = plan_sampling("heun", gm, p, (2,), nfe=9)
    assert heun.steps == 5 and heun.nfe == 9
    assert plan_sampling("heun", gm, p, (2,), steps=5).nfe == 9
    assert plan_sampling("dpmpp_2m", gm, p, (2,), nfe=6).steps == 6
    with pytest.raises(UnnoiseError, match="not both"):
        plan_sampling("heun", gm, p, (2,), nfe=9, steps=5)
    with pytest.raises(UnnoiseError, match="does not apply to sampler 'auto'"):
        plan_sampling("auto", gm, p, (2,), nfe=4, grid="karras")
    x = torch.randn(4, 2, dtype=torch.float64) * p.sigma_max
    gm.calls = 0
    heun.function(gm, x, heun.sigmas)
    assert gm.calls == 9


def test_calibration_batch_grows_only_for_cheap_models():
    """The full search's batch scales with the model's FLOPs per sample: 64 trajectories for the digits
    demo's MLP (4.9 MFLOPs), 128 for a 1.5-MFLOP model, 1,024 at most (an exact mixture); large samples
    keep their reduced effort whatever the model costs."""
    import torch

    from unnoise.exact import random_mixture
    from unnoise.process import make_process
    from unnoise.sample.auto.cache import calibration_effort, flops_per_sample

    assert calibration_effort((1, 8, 8), 4_915_200)["batch"] == 64
    assert calibration_effort((2,), 1_500_000)["batch"] == 128
    assert calibration_effort((32,), 0) == dict(batch=64, sweeps=4, pool_factor=8)  # nothing counted: the floor
    assert calibration_effort((1, 4096), 1) == dict(batch=16, sweeps=0, pool_factor=2)
    mixture = random_mixture(32, 8, seed=0, decay=1.0, scale=1.0)
    flops = flops_per_sample(lambda x, sigma, cond=None: mixture.posterior_mean(x, sigma), (32,),
                             make_process("edm"), torch.float64)
    assert 0 < flops < 100_000
    assert calibration_effort((32,), flops)["batch"] == 1024
    assert calibration_effort((32,), 2**22 // 16)["batch"] == 1024  # 64 x 4 MFLOPs / 1,024 = 256 kFLOPs a sample
