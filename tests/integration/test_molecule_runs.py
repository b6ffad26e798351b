"""Molecule runs end to end on a tiny QM9-layout CSV built here (not the 100 MB qm9pack): train two steps from
the qm9 presets with a tiny EGNN, sample through the pipeline (zero centre of mass, zero padding, atom counts
from the training histogram, batch invariance), write SDF / XYZ / PNG that read back, evaluate, and one-line
errors for bad inputs."""
import csv
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from unnoise.cli.main import main
from unnoise.data.spec import DataSpec
from unnoise.io import write_samples
from unnoise.molecules.features import atom_mask_of
from unnoise.molecules.zero_com import centre_of_mass

HAS_RDKIT = importlib.util.find_spec("rdkit") is not None
EPS32 = torch.finfo(torch.float32).eps
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64) / math.sqrt(3)
# (SMILES, elements, positions in Å): methane, ammonia (pyramidal), water, hydrogen fluoride
MOLECULES = [
    ("C", ["C", "H", "H", "H", "H"], np.vstack([np.zeros(3), 1.09 * TETRAHEDRON])),
    ("N", ["N", "H", "H", "H"], np.vstack([np.zeros(3), 1.01 * TETRAHEDRON[:3]])),
    ("O", ["O", "H", "H"], np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])),
    ("F", ["F", "H"], np.array([[0, 0, 0], [0.92, 0, 0]])),
]
PROPERTIES = ["Dipole_debye", "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au",
              "Heatcapacity_Cv_cal_mol_K"]


def write_csv(path, count: int = 24, seed: int = 0):
    """`count` randomly rotated and shifted copies of MOLECULES in qm9pack's CSV layout."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *PROPERTIES])
        for index in range(count):
            smiles, symbols, positions = MOLECULES[index % len(MOLECULES)]
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            moved = positions @ q.T + rng.normal(size=3)
            elements = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
            xyz = "[" + ",".join("[" + ",".join(f"{v:.6f}" for v in row) + "]" for row in moved) + "]"
            writer.writerow([index + 1, smiles, len(symbols), elements, xyz, *(rng.normal(size=len(PROPERTIES)) + 2)])
    return path


def tiny(data_file, *more):
    """Overrides that shrink the qm9 presets to seconds: the tiny CSV, a 1-layer EGNN of 8 channels."""
    pairs = {"data.options.file": str(data_file), "model.network_options.hidden": "8",
             "model.network_options.depth": "1", "train.batch_size": "4", "train.sample_every": "0",
             "train.log_every": "1", "train.threads": "1", "sample.steps": "3", "sample.n": "2",
             **dict(m.split("=", 1) for m in more)}
    return [arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("qm9") / "tiny.csv")


@pytest.fixture(scope="module")
def run(data_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "--preset", "qm9", "--steps", "2", "--out", str(root / "h"), *tiny(data_file)]) == 0
    return root / "h"


def test_training_records_the_molecule_fields(run):
    config = json.loads((run / "config.json").read_text())
    assert config["modality"] == "molecule" and config["data_shape"] == [29, 9]
    assert config["molecule"]["types"] == ["H", "C", "N", "O", "F"] and config["molecule"]["charges"] is True
    counts = config["molecule"]["atom_counts"]  # the training split's histogram: only sizes 2..5 occur
    assert len(counts) == 30 and sum(counts) > 0 and all(c == 0 for n, c in enumerate(counts) if n not in (2, 3, 4, 5))
    assert config["model"]["network_options"]["num_features"] == 6


def test_pipeline_samples_lie_in_the_zero_com_subspace_with_batch_invariance(run):
    from unnoise.pipeline import Pipeline, SampleRequest

    pipe = Pipeline.load(run, device="auto")
    batch = pipe.sample(SampleRequest(n=4, seed=3, sampler="euler_ancestral", steps=4))
    single = torch.cat([pipe.sample(SampleRequest(n=1, seed=3 + i, sampler="euler_ancestral", steps=4))
                        for i in range(4)])
    mask = (batch != 0).any(dim=-1)
    assert set(mask.sum(dim=1).tolist()) <= {2, 3, 4, 5}  # sizes from the training histogram
    assert torch.equal(mask, torch.arange(29) < mask.sum(dim=1, keepdim=True))  # real atoms first, padding zero
    assert float(centre_of_mass(batch[..., :3], mask).abs().max()) <= 64 * EPS32 * float(batch.abs().max())
    assert torch.equal(single != 0, batch != 0)
    assert float((single - batch).abs().max()) <= 1e4 * EPS32 * float(batch.abs().max())
    fixed = pipe.sample(SampleRequest(n=2, seed=0, steps=2, atoms=7))
    assert ((fixed != 0).any(dim=-1).sum(dim=1) == 7).all()


def test_sample_writes_sdf_xyz_and_png(run, tmp_path):
    for suffix in ("sdf", "xyz", "png"):
        assert main(["sample", str(run), "--n", "3", "--steps", "2", "--out", str(tmp_path / f"m.{suffix}")]) == 0
    xyz = (tmp_path / "m.xyz").read_text().splitlines()
    assert int(xyz[0]) in (2, 3, 4, 5) and xyz[1] == "sample 0" and len(xyz[2].split()) == 4
    sdf = (tmp_path / "m.sdf").read_text()
    assert sdf.count("$$$$\n") == 3 and sdf.count("M  END") == 3
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    if HAS_RDKIT:
        from rdkit import Chem

        read = [m for m in Chem.SDMolSupplier(str(tmp_path / "m.sdf"), sanitize=False, removeHs=False)]
        assert len(read) == 3 and all(m is not None for m in read)
        assert read[0].GetNumAtoms() == int(xyz[0])


def test_sdf_of_methane_holds_its_geometry_and_bonds(tmp_path):
    smiles, symbols, positions = MOLECULES[0]
    spec = DataSpec((6, 9), "molecule", atom_types=("H", "C", "N", "O", "F"))
    x = torch.zeros(1, 6, 9, dtype=torch.float64)
    x[0, :5, :3] = torch.from_numpy(positions)
    x[0, 0, 3 + 1] = x[0, 1:5, 3] = 0.25  # C, then four H (one-hot times 0.25)
    [path] = write_samples(x, spec, tmp_path / "methane.sdf", names=["methane"])
    lines = path.read_text().splitlines()
    assert lines[0] == "methane" and lines[3].startswith("  5  4")
    assert lines[4].split()[:4] == [f"{v:.4f}" for v in positions[0]] + ["C"]
    assert sorted(line.split()[:3] for line in lines[9:13]) == [["1", str(k), "1"] for k in range(2, 6)]
    if HAS_RDKIT:
        from rdkit import Chem

        [molecule] = list(Chem.SDMolSupplier(str(path), removeHs=False))
        assert Chem.MolToSmiles(Chem.RemoveHs(molecule)) == "C"
        assert np.allclose(molecule.GetConformer().GetPositions(), positions, atol=1e-4)


def test_3d_view_draws_bonds_and_element_colours():
    """Hydrogen fluoride: a bond (grey line) between a light-grey H disc and a green F disc, at the picture's
    middle height after the principal-axes turn (the bond lies along the widest axis)."""
    from unnoise.io.molecules import ELEMENT_COLOURS, view_image

    _, symbols, positions = MOLECULES[3]
    picture = np.asarray(view_image(positions, symbols, size=100))
    colours = {tuple(c) for c in picture.reshape(-1, 3).tolist()}
    assert ELEMENT_COLOURS["F"] in colours and ELEMENT_COLOURS["H"] in colours and (120, 120, 120) in colours
    assert tuple(picture[50, 50]) == (120, 120, 120)  # the bond passes through the centre


def test_molecule_objective_noise_is_projected_and_carries_the_mask(run):
    from unnoise.conditions import Conditions
    from unnoise.data import load_dataset
    from unnoise.molecules.features import AtomFeatures
    from unnoise.objectives.molecule import MoleculeObjective
    from unnoise.run.build import build_denoiser
    from unnoise.run.load import read_run_config
    from unnoise.run.molecules import atom_features_of

    config = read_run_config(run)
    dataset = load_dataset("qm9", **config.data.options)
    objective = MoleculeObjective(build_denoiser(config), Conditions(), config.train, atom_features_of(config))
    rows = objective.draw({"x": dataset.x[:4], "index": torch.arange(4)}, torch.Generator().manual_seed(0))
    mask = atom_mask_of(dataset.x[:4], AtomFeatures())
    assert torch.equal(rows["cond"]["atom_mask"], mask)
    assert torch.equal(rows["noise"][~mask], torch.zeros_like(rows["noise"][~mask]))
    assert float(centre_of_mass(rows["noise"][..., :3], mask).abs().max()) <= 16 * EPS32
    losses = objective.loss_of(rows)
    assert losses.shape == (4,) and bool(torch.isfinite(losses).all())


@pytest.mark.skipif(not HAS_RDKIT, reason="needs RDKit (pip install rdkit)")
def test_eval_reports_the_molecule_metrics(run, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--n", "4", "--steps", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
        assert 0.0 <= result[key] <= 1.0
    assert result["molecules"] == 4 and result["protocol"]["seeds"] == [0, 3]
    assert "distinct valid training SMILES" in result["protocol"]["novelty"]["against"]
    assert (run / "eval_samples.sdf").read_text().count("$$$$") == 4 and (run / "train_smiles.json").is_file()


def test_eval_nll_of_held_out_molecules(run, tmp_path):
    out = tmp_path / "nll.json"
    assert main(["eval", str(run), "--nll", "--n", "3", "--draws", "1", "--rtol", "1e-3", "--atol", "1e-3",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 3 and math.isfinite(result["nll_nats"]) and result["log_p_n"] < 0
    assert abs(result["nll_nats"] - (result["nll_given_n_nats"] - result["log_p_n"])) <= 1e-9 * abs(result["nll_nats"])
    assert result["protocol"]["data"]["options"]["split"] == "test"


def test_one_line_errors(run, data_file, tmp_path, user_error):
    out = str(tmp_path / "bad")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", out, *tiny(data_file),
                "--set", "model.network=mlp"], "model.network=mlp", "egnn")
    user_error(["train", "--preset", "toy2d", "--steps", "1", "--out", out, "--set", "model.network=egnn"],
               "model.network=egnn", "molecule")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", out, *tiny(tmp_path / "missing.csv")],
               "missing.csv", "not found")
    (tmp_path / "broken.csv").write_text("Index,SMILES\n1,C\n", encoding="utf-8")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", out, *tiny(tmp_path / "broken.csv")],
               "broken.csv", "no column")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", out, *tiny(data_file),
                "--set", "model.network_options.num_features=3"], "num_features=3", "fixed to 6")
    user_error(["sample", str(run), "--atoms", "30", "--out", str(tmp_path / "m.sdf")], "--atoms", "[1, 29]")
    user_error(["sample", str(run), "--sampler", "auto", "--out", str(tmp_path / "m.sdf")], "auto")
    user_error(["sample", str(run), "--out", str(tmp_path / "m.mol")], "m.mol", ".sdf")


def test_property_conditional_run_samples_with_guidance(data_file, tmp_path, user_error, capsys):
    """model.conditions [property] on data.options.properties=alpha: the statistics are recorded, the EGNN
    takes the property part, `--property alpha=V --guidance 2` samples through classifier-free guidance
    (its null branch sees the same atom mask), and bad property requests are one-line errors."""
    out = tmp_path / "alpha"
    assert main(["train", "--preset", "qm9", "--steps", "2", "--out", str(out), *tiny(data_file),
                 "--set", "model.conditions=property", "--set", "data.options.properties=alpha"]) == 0
    config = json.loads((out / "config.json").read_text())
    statistics = config["molecule"]["properties"]
    assert statistics["names"] == ["alpha"] and statistics["mad"][0] > 0
    assert config["model"]["network_options"]["properties"] == 1
    for extra in (["--property", "alpha=2.5", "--guidance", "2"], []):
        assert main(["sample", str(out), "--n", "2", "--steps", "2", "--out", str(tmp_path / "p.xyz"), *extra]) == 0
    capsys.readouterr()  # the progress lines so far
    user_error(["sample", str(out), "--property", "gap=1", "--out", str(tmp_path / "p.xyz")], "gap", "alpha")
    user_error(["sample", str(out), "--property", "alpha", "--out", str(tmp_path / "p.xyz")], "NAME=NUMBER")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", str(tmp_path / "bad"), *tiny(data_file),
                "--set", "data.options.properties=alpha"], "model.conditions")
    user_error(["train", "--preset", "qm9", "--steps", "1", "--out", str(tmp_path / "bad"), *tiny(data_file),
                "--set", "model.conditions=property", "--set", "data.options.properties=beta"], "beta")
