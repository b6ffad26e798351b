"""The objective seam: the trainer runs any objective; init_from copies or freezes another run's weights;
the flow-matching process trains through the same denoising objective."""
import math

import pytest
import torch

from unnoise.errors import UnnoiseError
from unnoise.objectives import DenoisingObjective
from unnoise.run.checkpoint import read_checkpoint_tensors
from unnoise.run.config import apply_overrides, config_from_dict
from unnoise.run.presets import preset
from unnoise.run.training import build_trainer, train_run

SETTINGS = ["model.network_options.hidden=16", "model.network_options.depth=1", "data.options.n=128",
            "train.batch_size=32", "train.sample_every=0", "train.checkpoint_every=0", "train.steps=2"]


def toy(*extra):
    return config_from_dict(apply_overrides(preset("toy2d"), [*SETTINGS, *extra]))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("source") / "run"
    train_run(toy(), run, preview=False)
    return run


def test_copy_init_starts_from_the_source_runs_ema_weights(source, tmp_path):
    trainer = build_trainer(toy(f'model.init_from={{"run": "{source}", "mode": "copy"}}'), tmp_path / "copy",
                            preview=False)
    ema = read_checkpoint_tensors(source, "ema.safetensors")
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert len(trainer.parameters) == len(list(trainer.model.parameters()))  # copy trains everything


def test_frozen_init_keeps_copied_parameters_bit_identical_and_trains_the_new_ones(source, tmp_path):
    """A class-conditional network on top of an unconditional run: the class table is new and trains,
    every copied parameter is frozen, left out of the optimizer and unchanged by a train step."""
    config = toy("model.conditions=label", "data.options.kind=ring", f'model.init_from={{"run": "{source}", "mode": "frozen"}}')
    trainer = build_trainer(config, tmp_path / "frozen", preview=False)
    ema = read_checkpoint_tensors(source, "ema.safetensors")
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert {names[id(p)] for p in trainer.parameters} == {"cond_embed.classes.table.weight"}
    table = trainer.model.cond_embed.classes.table.weight.detach().clone()
    trainer.train_step()
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert not torch.equal(trainer.model.cond_embed.classes.table.weight, table)


def test_bad_init_from_is_a_one_line_error(source, tmp_path):
    with pytest.raises(UnnoiseError, match="model.init_from.mode: unknown 'thaw'"):
        build_trainer(toy(f'model.init_from={{"run": "{source}", "mode": "thaw"}}'), tmp_path / "a")
    with pytest.raises(UnnoiseError, match="nothing to train"):
        build_trainer(toy(f'model.init_from={{"run": "{source}", "mode": "frozen"}}'), tmp_path / "b")


def test_objective_loss_is_draw_then_loss_of(tmp_path):
    trainer = build_trainer(toy(), tmp_path / "run", preview=False)
    objective = trainer.objective
    assert isinstance(objective, DenoisingObjective)
    batch = trainer.batches.next()
    a = objective.loss(batch, torch.Generator().manual_seed(3))
    b = objective.loss_of(objective.draw(batch, torch.Generator().manual_seed(3)))
    assert a.shape == (32,) and torch.equal(a, b)


def test_flow_matching_trains_and_samples(tmp_path):
    from unnoise.run.load import load_run
    from unnoise.pipeline import sample_run

    run = tmp_path / "flow"
    result = train_run(toy("model.process=flow", "model.prediction=velocity", "train.steps=20"), run, preview=False)
    assert math.isfinite(result["final_loss"])
    denoiser, config = load_run(run)
    assert denoiser.process.name == "flow"
    x = sample_run(denoiser, config, n=8, sampler="heun", steps=4)
    assert x.shape == (8, 2) and torch.isfinite(x).all()
