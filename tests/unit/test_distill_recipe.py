"""model.distill recipes: one-line refusals naming the setting, defaults filled once and kept."""
import dataclasses

import pytest

from unnoise.errors import UnnoiseError
from unnoise.run.config import config_from_dict
from unnoise.run.distill import check_recipe, resolve_distill_config
from unnoise.run.presets import preset


@pytest.mark.parametrize("recipe, fragment", [
    ({"method": "distil"}, "model.distill.method='distil': valid: progressive, consistency, consistency-training"),
    ({"method": "progressive", "steps": 4}, "model.distill.teacher=None: progressive needs the teacher"),
    ({"method": "progressive", "teacher": "t", "steps": 0}, "model.distill.steps=0"),
    ({"method": "progressive", "teacher": "t", "steps": 4, "target_ema": 0.9}, "model.distill.target_ema=0.9: not a progressive"),
    ({"method": "consistency", "teacher": "t", "target_ema": 1.0}, "model.distill.target_ema=1.0: must be in [0, 1)"),
    ({"method": "consistency-training", "discretization_start": 20, "discretization_end": 10}, "discretization_end=10"),
    ({"method": "consistency-training", "index_density": "normal"}, "index_density='normal': valid: lognormal, uniform"),
])
def test_bad_recipes_are_refused_in_one_line(recipe, fragment):
    with pytest.raises(UnnoiseError) as error:
        check_recipe(recipe)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_defaults_are_filled_once_and_recorded_values_win():
    config = config_from_dict(preset("digits-consistency"))
    config = dataclasses.replace(config, data_shape=(1, 8, 8))
    resolved = resolve_distill_config(config).model.distill
    assert resolved["sigma_min"] == 0.002 and resolved["curriculum_steps"] == 6000 and resolved["target_ema"] == 0.95
    assert abs(resolved["huber_c"] - 0.00054 * 8) < 1e-15
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=9000),
                                 model=dataclasses.replace(config.model, distill=resolved))
    assert resolve_distill_config(longer).model.distill == resolved  # a resumed run keeps its K


def test_distill_command_refusals(user_error, tmp_path):
    user_error(["distill", str(tmp_path), "--out", str(tmp_path / "s"), "--nfe", "0"], "--nfe must be an integer >= 1")
    user_error(["distill", str(tmp_path / "none"), "--out", str(tmp_path / "s")], "run directory not found")
    user_error(["distill", str(tmp_path), "--from-scratch", "--out", str(tmp_path / "s")],
               "--from-scratch: only --method consistency-training")
