"""Students as ordinary runs: a progressive round and a consistency student of a tiny teacher record their
step schedules, resume bit for bit, load through the Pipeline and sample at --nfe 1 and 2."""
import json

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.pipeline import Pipeline, SampleRequest
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.distill import resolve_distill_config, student_config
from unnoise.run.distill_rounds import distill_run, round_steps
from unnoise.run.presets import preset
from unnoise.run.training import train_run
from unnoise.sample import SeededNoise
from unnoise.sample.consistency import ConsistencyDenoiser, nested_karras

TINY = {"batch_size": 32, "sample_every": 0, "checkpoint_every": 0, "lr": 1e-3, "warmup_steps": 0}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("distill") / "teacher"
    d = apply_overrides(preset("toy2d"), ["model.process=edm", "model.prediction=edm", "model.network_options.hidden=16",
                                          "model.network_options.depth=1", "data.options.n=200"])
    d["train"].update(TINY, steps=4)
    train_run(config_from_dict(d), run)
    return run


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoint" / "ema.safetensors"))


def _rounds_identical(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("method", ["progressive", "consistency"])
def test_student_resumes_bit_for_bit_with_its_schedule(teacher, tmp_path, method):
    # consistency: a curriculum 2 -> 4 -> 8 intervals over K = 6 steps, so the step count must survive the resume
    recipe = {"discretization_start": 2, "discretization_end": 8, "curriculum_steps": 6} if method != "progressive" \
        else None
    config = student_config(teacher, method, steps=2, train=dict(TINY, steps=6), recipe=recipe)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(config, straight)
    train_run(student_config(teacher, method, steps=2, train=dict(TINY, steps=6, checkpoint_every=2), recipe=recipe),
              split, steps=3)
    train_run(None, split, resume=True, steps=6)
    assert _rounds_identical(straight, split)
    recipe = json.loads((split / "config.json").read_text())["model"]["distill"]
    if method == "progressive":
        assert recipe["sigmas"] == nested_karras(2, 0.002, 80.0).tolist()
        assert recipe["teacher_sigmas"][::2] == recipe["sigmas"] and len(recipe["teacher_sigmas"]) == 5
    else:
        assert recipe["curriculum_steps"] == 6 and recipe["target_ema"] == 0.95 and recipe["huber_c"] > 0


@pytest.mark.parametrize("method", ["consistency", "consistency-training"])
def test_consistency_student_samples_in_one_and_two_steps(teacher, tmp_path, method):
    run = tmp_path / "cd"
    train_run(student_config(teacher, method, steps=1, train=dict(TINY, steps=2)), run)
    pipe = Pipeline.load(run, device="auto")
    assert isinstance(pipe.denoiser, ConsistencyDenoiser) and pipe.config.sample.sampler == "consistency"
    one = pipe.sample(SampleRequest(n=5, seed=3, nfe=1))
    z = SeededNoise(range(3, 8)).initial((2,), 80.0)
    with torch.no_grad():
        expected = pipe.denoiser(z.to(pipe.device), torch.full((5,), 80.0, dtype=torch.float64)).cpu()
    torch.testing.assert_close(one, expected, rtol=0, atol=1e-5)
    two = pipe.sample(SampleRequest(n=5, seed=3, nfe=2))
    assert two.shape == (5, 2) and torch.isfinite(two).all() and not torch.equal(one, two)


def test_progressive_rounds_and_refusals(teacher, tmp_path):
    assert round_steps(16, 2) == [8, 4, 2]
    with pytest.raises(UnnoiseError, match="power of two"):
        round_steps(12, 4)
    summary = distill_run(teacher, tmp_path / "student", "progressive", nfe=2, teacher_steps=8,
                          train=dict(TINY, steps=2))
    assert [r["steps"] for r in summary["rounds"]] == [4, 2]
    first = json.loads((tmp_path / "student" / "rounds" / "steps-0004" / "config.json").read_text())
    last = json.loads((tmp_path / "student" / "config.json").read_text())
    assert last["model"]["distill"]["teacher"] == str(tmp_path / "student" / "rounds" / "steps-0004")
    assert last["model"]["distill"]["teacher_sigmas"] == first["model"]["distill"]["sigmas"]
    again = distill_run(teacher, tmp_path / "student", "progressive", nfe=2, teacher_steps=8, train=dict(TINY, steps=2))
    assert all(r.get("kept") for r in again["rounds"])  # finished rounds are not retrained
    x = Pipeline.load(tmp_path / "student", device="auto").sample(SampleRequest(n=3, nfe=2))
    assert x.shape == (3, 2) and torch.isfinite(x).all()
    eps = student_config(teacher, "progressive", steps=1)
    eps = eps.__class__(**{**eps.__dict__, "model": eps.model.__class__(**{**eps.model.__dict__, "prediction": "eps"})})
    with pytest.raises(UnnoiseError, match="needs x0, v or edm"):
        resolve_distill_config(eps)
