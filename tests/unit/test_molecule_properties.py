"""Property conditioning and its evaluation protocol: exact statistics and encodings of the property
condition, one-line errors for bad requests, the #atoms reference by hand, and the property predictor's
invariance to rotations, reflections, translations and atom permutations (float64)."""
import math

import pytest
import torch

from unnoise.conditions.properties import PropertyCondition, parse_properties, property_statistics
from unnoise.errors import UnnoiseError
from unnoise.eval.molecule_properties import PropertyPredictor, atom_count_baseline
from unnoise.molecules.zero_com import project


def test_statistics_and_encoding_are_exact():
    values = {"alpha": torch.tensor([1.0, 2.0, 3.0, 6.0]), "gap": torch.tensor([5.0, 5.0, 5.0, 5.0])}
    statistics = property_statistics(values, ["alpha", "gap"])
    assert statistics == {"names": ["alpha", "gap"], "mean": [3.0, 5.0], "mad": [1.5, 1.0]}  # gap: MAD 0 -> 1
    condition = PropertyCondition(statistics)
    part = condition.from_request("gap=7,alpha=0", 3)
    assert part.tolist() == [[-2.0, 2.0, 1.0]] * 3  # (0 - 3) / 1.5, (7 - 5) / 1, presence
    assert condition.null(2).tolist() == [[0.0, 0.0, 0.0]] * 2
    dropped = condition.dropout(part, 0.999999, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, torch.zeros_like(part))


def test_bad_property_requests_are_one_line_errors():
    condition = PropertyCondition({"names": ["alpha"], "mean": [0.0], "mad": [1.0]})
    for text, fragment in (("alpha", "NAME=NUMBER"), ("alpha=x", "NAME=NUMBER"), ("alpha=nan", "NAME=NUMBER"),
                           ("gap=1", "unknown 'gap'"), ("alpha=1,gap=2", "unknown 'gap'")):
        with pytest.raises(UnnoiseError, match=fragment) as error:
            condition.from_request(text, 1)
        assert "\n" not in str(error.value)
    with pytest.raises(UnnoiseError, match="data.options.properties"):
        PropertyCondition({}).null(1)
    assert parse_properties(" alpha = 80 , gap=-1e2") == {"alpha": 80.0, "gap": -100.0}


def test_atom_count_reference_is_the_mean_per_count():
    predicted = atom_count_baseline(torch.tensor([2, 2, 3]), torch.tensor([1.0, 3.0, 10.0]), torch.tensor([2, 3, 4]))
    assert predicted.tolist() == [2.0, 10.0, pytest.approx(14 / 3)]


def test_property_predictor_is_e3_and_permutation_invariant():
    torch.manual_seed(0)
    model = PropertyPredictor(num_features=6, hidden=16, depth=2).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.4)
    g = torch.Generator().manual_seed(1)
    mask = torch.arange(7).unsqueeze(0) < torch.tensor([[7], [4]])
    x = project(torch.randn(2, 7, 9, generator=g, dtype=torch.float64), mask)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    q[:, 0] = -q[:, 0] if torch.det(q) > 0 else q[:, 0]  # a reflection
    moved = torch.cat([(x[..., :3] @ q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)) * mask.unsqueeze(-1),
                       x[..., 3:]], dim=-1)
    order = torch.randperm(7, generator=g)
    with torch.no_grad():
        value = model(x, mask)
        for other, other_mask in ((moved, mask), (x[:, order], mask[:, order])):
            assert float((model(other, other_mask) - value).abs().max()) <= 1e-9 * max(1.0, float(value.abs().max()))
    assert all(math.isfinite(v) for v in value.tolist())
