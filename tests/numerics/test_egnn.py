"""The EGNN network and a whole denoiser built on it commute with E(3) and atom permutations; padding atoms
never influence real ones. float64; equivariance to 1e-6 relative (float64 rounding is ~1e-15, so this
catches any broken symmetry, not last-bit kernel differences)."""
from __future__ import annotations

import pytest
import torch

from unnoise.molecules.zero_com import centre_of_mass, project
from unnoise.nn.atom_transformer import AtomTransformer, AtomTransformerConfig
from unnoise.nn.egnn import EGNN, EGNNConfig
from unnoise.param import Denoiser
from unnoise.process import make_process

F = 6  # 5 one-hot atom types + 1 charge column, as QM9 with hydrogens
RELATIVE = 1e-6
EXACT = 50 * torch.finfo(torch.float64).eps


def network(attention: bool = True, seed: int = 0) -> EGNN:
    """A small float64 EGNN with every parameter random (the zero-initialised output would hide errors)."""
    torch.manual_seed(seed)
    net = EGNN(EGNNConfig(num_features=F, hidden=16, depth=2, emb_dim=8, attention=attention)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.4)
    return net


def molecules(seed: int = 1, counts=(7, 5, 3), max_atoms: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(max_atoms).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
    x = torch.randn(len(counts), max_atoms, 3 + F, generator=g, dtype=torch.float64) * 1.5
    return project(x, mask), mask


def random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def transform(x: torch.Tensor, mask: torch.Tensor, q: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Real atoms' positions p -> p Q^T + shift; features and padding rows unchanged."""
    positions = (x[..., :3] @ q.T + shift) * mask.unsqueeze(-1).to(x.dtype)
    return torch.cat([positions, x[..., 3:]], dim=-1)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, relative: float = RELATIVE) -> None:
    error = float((actual - expected).norm())
    assert error <= relative * float(expected.norm()), f"error {error:.3e} vs norm {float(expected.norm()):.3e}"


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("reflect", [False, True])
def test_network_is_e3_equivariant(attention, reflect):
    net, (x, mask) = network(attention), molecules()
    t = torch.tensor([3.0, 250.0, 900.0], dtype=torch.float64)
    q, shift = random_orthogonal(2 + reflect, reflect), torch.tensor([0.7, -2.0, 1.3], dtype=torch.float64)
    with torch.no_grad():
        out = net(x, t, {"atom_mask": mask})
        moved = net(transform(x, mask, q, shift), t, {"atom_mask": mask})
    # eps of the positions rotates (and ignores the shift), eps of the features is invariant
    assert_close(moved, transform(out, mask, q, torch.zeros(3, dtype=torch.float64)))
    assert float(out[..., :3].abs().max()) > 1e-3 and float(out[..., 3:].abs().max()) > 1e-3  # not trivially 0


def test_network_commutes_with_atom_permutations():
    net, (x, mask) = network(), molecules()
    t = torch.tensor([10.0, 100.0, 500.0], dtype=torch.float64)
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(3))  # mixes real and padding rows
    with torch.no_grad():
        out = net(x, t, {"atom_mask": mask})
        permuted = net(x[:, order], t, {"atom_mask": mask[:, order]})
    assert_close(permuted, out[:, order])


def test_network_output_stays_in_the_zero_com_subspace():
    net, (x, mask) = network(), molecules()
    with torch.no_grad():
        out = net(x, torch.full((3,), 50.0, dtype=torch.float64), {"atom_mask": mask})
    assert float(centre_of_mass(out[..., :3], mask).abs().max()) <= EXACT * float(out.abs().max())
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))


def test_padding_atoms_never_influence_real_ones():
    net, (x, mask) = network(), molecules()
    t = torch.tensor([5.0, 50.0, 500.0], dtype=torch.float64)
    garbage = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 10
    with torch.no_grad():
        out = net(x, t, {"atom_mask": mask})
        spoiled = net(torch.where(mask.unsqueeze(-1), x, garbage), t, {"atom_mask": mask})
        alone = net(x[2:, :3], t[2:], {"atom_mask": mask[2:, :3]})  # molecule 2 (3 atoms) without padding
    assert torch.equal(spoiled[mask], out[mask])
    assert_close(alone[0], out[2, :3], relative=EXACT)


@pytest.mark.parametrize("process, prediction", [("vp", "eps"), ("edm", "edm")])
def test_whole_denoiser_commutes_with_e3_and_permutations(process, prediction):
    """The denoiser D(x, sigma) of the qm9 presets (EDM preconditioning, c_skip x + c_out F) and of an eps
    prediction on a VP process (x - sigma eps_hat), on molecules at zero centre of mass (where samplers keep
    them): D(Q x) = Q D(x) for rotations and reflections Q and D(P x) = P D(x) for atom permutations P. A
    translation leaves D's zero-CoM part unchanged; with eps prediction D(x + s) = D(x) + s exactly."""
    D = Denoiser(network(), make_process(process), prediction=prediction, sigma_data=1.0)
    x, mask = molecules(seed=4)
    sigma = torch.tensor([0.3, 2.0, 20.0], dtype=torch.float64)
    cond = {"atom_mask": mask}
    q, shift = random_orthogonal(5, reflect=True), torch.tensor([-1.1, 0.4, 2.5], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        x0 = D(x, sigma, cond)
        assert_close(D(transform(x, mask, q, zero), sigma, cond), transform(x0, mask, q, zero))
        assert_close(D(x[:, order], sigma, {"atom_mask": mask[:, order]}), x0[:, order])
        moved = D(transform(x, mask, q, shift), sigma, cond)
        assert_close(project(moved, mask), transform(x0, mask, q, zero))
        if prediction == "eps":
            assert_close(moved, transform(x0, mask, q, shift))


def test_baseline_transformer_commutes_with_permutations_and_translations_but_not_rotations():
    """The non-equivariant baseline (nn/atom_transformer.py): permutations and translations commute, padding
    never matters, the output stays in the zero-CoM subspace; a rotation does not commute."""
    torch.manual_seed(0)
    net = AtomTransformer(AtomTransformerConfig(num_features=F, width=16, depth=2, heads=2, emb_dim=8)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.4)
    x, mask = molecules()
    t = torch.tensor([10.0, 100.0, 500.0], dtype=torch.float64)
    order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(3))
    garbage = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 10
    q, shift = random_orthogonal(2, reflect=False), torch.tensor([0.7, -2.0, 1.3], dtype=torch.float64)
    net.eval()
    with torch.no_grad():
        out = net(x, t, {"atom_mask": mask})
        assert_close(net(x[:, order], t, {"atom_mask": mask[:, order]}), out[:, order])
        assert_close(net(transform(x, mask, torch.eye(3, dtype=torch.float64), shift), t, {"atom_mask": mask}), out)
        assert_close(net(torch.where(mask.unsqueeze(-1), x, garbage), t, {"atom_mask": mask}), out)
        rotated = net(transform(x, mask, q, torch.zeros(3, dtype=torch.float64)), t, {"atom_mask": mask})
    assert float(centre_of_mass(out[..., :3], mask).abs().max()) <= EXACT * float(out.abs().max())
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    expected = transform(out, mask, q, torch.zeros(3, dtype=torch.float64))
    assert float((rotated - expected).norm()) > 1e-3 * float(expected.norm())  # not equivariant


def test_edge_messages_equal_phi_e_on_the_concatenated_pair():
    """The split first layer of phi_e (W_i h_i + W_j h_j + w_d d + w_a a + b) is eq. (3)'s phi_e applied to
    the concatenation [h_i, h_j, d_ij, a_ij]: equal to float64 rounding."""
    layer = network().layers[0]
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    d = torch.rand(2, 5, 5, 1, generator=g, dtype=torch.float64)
    a = torch.rand(2, 5, 5, 1, generator=g, dtype=torch.float64)
    pair = torch.cat([h.unsqueeze(2).expand(-1, -1, 5, -1), h.unsqueeze(1).expand(-1, 5, -1, -1), d, a], dim=-1)
    with torch.no_grad():
        expected = layer.phi_e(pair)
        assert_close(layer.edge_messages(h, d, a), expected, relative=EXACT)


def test_property_context_keeps_equivariance_and_changes_the_output():
    """An EGNN with properties=2 takes cond["property"] (B, 3) as invariant context: still E(3)-equivariant,
    and a different property value changes the prediction."""
    torch.manual_seed(1)
    net = EGNN(EGNNConfig(num_features=F, hidden=16, depth=2, emb_dim=8, properties=2)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.4)
    x, mask = molecules()
    t = torch.tensor([3.0, 250.0, 900.0], dtype=torch.float64)
    part = torch.tensor([[0.5, -1.0, 1.0], [2.0, 0.3, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    q, zero = random_orthogonal(4, reflect=True), torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        out = net(x, t, {"atom_mask": mask, "property": part})
        moved = net(transform(x, mask, q, zero), t, {"atom_mask": mask, "property": part})
        other = net(x, t, {"atom_mask": mask, "property": part.flip(0)})
    assert_close(moved, transform(out, mask, q, zero))
    assert float((other - out).norm()) > 1e-3 * float(out.norm())
    with pytest.raises(ValueError, match="property"):
        net(x, t, {"atom_mask": mask})
