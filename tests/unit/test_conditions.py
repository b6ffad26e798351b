"""Conditions: named parts, any combination in the U-Net, requests, dropout, and older configs."""
import pytest
import torch

from unnoise.conditions import (Conditions, LabelCondition, LowResCondition, concat_conditions, conditions_for,
                                slice_condition)
from unnoise.errors import UnnoiseError
from unnoise.nn import build_network
from unnoise.run.config import config_from_dict

UNET = {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
        "groups": 4, "attention_resolutions": [4]}


def _unzero(net):
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)
    return net.eval()


def _text(n, seed, length=3, dim=6):
    g = torch.Generator().manual_seed(seed)
    return {"tokens": torch.randn(n, length, dim, generator=g), "mask": torch.ones(n, length, dtype=torch.bool),
            "pooled": torch.randn(n, dim, generator=g)}


@pytest.mark.parametrize("parts", [("label", "text"), ("text", "lowres"), ("label", "text", "lowres")])
def test_unet_takes_any_combination_and_every_part_matters(parts):
    torch.manual_seed(0)
    options = dict(UNET, num_classes=3 if "label" in parts else 0, context_dim=6 if "text" in parts else 0,
                   cond_channels=1 if "lowres" in parts else 0)
    net = _unzero(build_network("unet", options))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 500.0])
    values = {"label": (torch.tensor([0, 1]), torch.tensor([2, 2])), "text": (_text(2, 1), _text(2, 2)),
              "lowres": (torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8))}
    cond = {k: values[k][0] for k in parts}
    out = net(x, t, cond)
    for key in parts:
        assert not torch.allclose(net(x, t, {**cond, key: values[key][1]}), out), key
    for key in ("text", "lowres"):  # required parts
        if key in parts:
            with pytest.raises(ValueError):
                net(x, t, {k: v for k, v in cond.items() if k != key})


def test_label_requests_by_index_or_name_with_one_line_errors():
    label = LabelCondition(3, ("C4", "D4", "E4"))
    assert label.from_request("D4", 2).tolist() == [1, 1]
    assert label.from_request(2, 2).tolist() == [2, 2] and label.from_request("0", 1).tolist() == [0]
    assert label.from_request([0, "E4"], 2).tolist() == [0, 2]
    with pytest.raises(UnnoiseError, match="class 'H9' is not one of this run's classes: C4, D4, E4"):
        label.from_request("H9", 1)
    with pytest.raises(UnnoiseError, match="0..4"):
        LabelCondition(5).from_request(7, 1)


def test_conditions_from_request_nulls_and_errors():
    conds = Conditions([LowResCondition(2, (1, 8, 8)), LabelCondition(3)])
    assert conds.names == ("label", "lowres") and not conds.empty and conds.guidable
    low = torch.rand(2, 1, 4, 4) * 2 - 1
    cond = conds.from_request({"lowres": low}, 2)
    assert cond["label"].tolist() == [3, 3] and cond["lowres"].shape == (2, 1, 8, 8)
    uncond = conds.unconditional({"label": torch.tensor([0, 1]), "lowres": cond["lowres"]})
    assert uncond["label"].tolist() == [3, 3] and torch.equal(uncond["lowres"], cond["lowres"])
    with pytest.raises(UnnoiseError, match="prompt: this run is not text-conditional"):
        conds.from_request({"prompt": "a cat", "lowres": low}, 2)
    with pytest.raises(UnnoiseError, match="needs a lowres condition"):
        conds.from_request({"label": 1}, 2)
    with pytest.raises(UnnoiseError, match=r"expected 2 low-resolution images of shape \(1, 4, 4\)"):
        conds.from_request({"lowres": torch.zeros(2, 1, 8, 8)}, 2)
    assert Conditions().from_request({}, 3) is None and Conditions().empty


def test_dropout_replaces_labels_by_the_null_and_never_drops_lowres():
    conds = Conditions([LabelCondition(10), LowResCondition(2, (1, 4, 4))])
    batch = {"x": torch.rand(2000, 1, 4, 4), "label": torch.randint(0, 10, (2000,))}
    cond = conds.from_batch(batch)
    dropped = conds.dropout(cond, 0.25, torch.Generator().manual_seed(0))
    changed = dropped["label"] != cond["label"]
    assert torch.all(dropped["label"][changed] == 10) and 0.2 < float((dropped["label"] == 10).float().mean()) < 0.3
    assert torch.equal(dropped["lowres"], cond["lowres"])


def test_slice_and_concat_work_on_nested_parts():
    a = {"label": torch.arange(4), "text": _text(4, 0)}
    b = slice_condition(a, slice(1, 3))
    assert b["label"].tolist() == [1, 2] and b["text"]["tokens"].shape[0] == 2
    both = concat_conditions(b, b)
    assert both["label"].tolist() == [1, 2, 1, 2] and both["text"]["mask"].shape == (4, 3)


def test_older_condition_flags_are_translated():
    old = config_from_dict({"model": {"class_conditional": True, "network": "unet"}})
    assert old.model.conditions == ("label",)
    sr = config_from_dict({"model": {"super_resolution": 2, "network": "unet"}})
    assert sr.model.conditions == ("lowres",) and sr.model.lowres_factor == 2
    assert config_from_dict({"model": {"conditions": "label,caption"}}).model.conditions == ("label", "caption")
    with pytest.raises(UnnoiseError, match="model.super_resolution must be 0 \\(off\\), 2 or 4"):
        config_from_dict({"model": {"super_resolution": 3}})
    resolved = config_from_dict({"model": {"conditions": ["label"]}, "num_classes": 4, "data_shape": [1, 8, 8]})
    assert conditions_for(resolved).names == ("label",)
