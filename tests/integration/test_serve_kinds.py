"""The studio's forms for ControlNet and molecule runs, through FastAPI's test client on tiny runs trained
here: each is listed with its kind, a control image or an atom count reaches the pipeline, every output
equals what the pipeline gives for its own seed, and bad uploads or values are one-line JSON errors."""
import base64
import io

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from unnoise.cli.main import main  # noqa: E402
from unnoise.pipeline import Pipeline, SampleRequest  # noqa: E402
from unnoise.run.config import apply_overrides, config_from_dict  # noqa: E402
from unnoise.run.presets import preset  # noqa: E402
from unnoise.run.training import train_run  # noqa: E402
from unnoise.studio import Studio, create_app  # noqa: E402

from test_molecule_runs import HAS_RDKIT, tiny, write_csv  # noqa: E402
from test_latent_runs import autoencoder_config, diffusion_config  # noqa: E402
from test_plan import TINY as MAZE_TINY  # noqa: E402

from unnoise.interop.tiny import write_pixel_folder  # noqa: E402

TINY_TRAIN = ["data.options.n=64", "data.options.size=16", "train.batch_size=8", "train.checkpoint_every=0",
              "train.sample_every=0", "train.warmup_steps=1", "train.threads=1", "sample.steps=3", "sample.n=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-kinds")
    base = config_from_dict(apply_overrides(preset("shapes"), TINY_TRAIN + [
        "train.steps=2", "model.network_options.base_channels=8", "model.network_options.channel_mult=[1,2]",
        "model.network_options.attention_resolutions=[]"]))
    train_run(base, root / "base", preview=False)
    control = config_from_dict(apply_overrides(preset("shapes-control"), TINY_TRAIN + [
        "train.steps=2", "train.lr=0.01", f"model.init_from.run={root / 'base'}"]))
    train_run(control, root / "control", preview=False)
    train_run(config_from_dict(autoencoder_config()), root / "ae", preview=False)
    train_run(config_from_dict(diffusion_config(codec={"run": str(root / "ae")})), root / "latent", preview=False)
    assert main(["train", "--preset", "maze-umaze", "--out", str(root / "maze"), *MAZE_TINY]) == 0
    write_pixel_folder(root / "hf-pixel")
    data = write_csv(root / "tiny.csv")
    assert main(["train", "--preset", "qm9", "--steps", "2", "--out", str(root / "qm9"), *tiny(data)]) == 0
    return root


@pytest.fixture
def client(runs):
    studio = Studio(runs, "auto", start=False)
    yield TestClient(create_app(studio), base_url="http://127.0.0.1"), studio
    studio.close()


def png_url(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def run_job(client, studio, run, **params):
    response = client.post("/api/jobs", json={"run": run, "form": "generate", "params": params})
    assert response.status_code == 200, response.text
    studio.queue.drain()
    job = client.get(f"/api/jobs/{response.json()['job']['id']}").json()
    assert job["status"] == "done", job
    return job


def test_runs_are_listed_with_their_kinds(client):
    client, _ = client
    kinds = {r["name"]: r["kind"] for r in client.get("/api/runs").json()["runs"]}
    assert kinds["control"] == "controlnet" and kinds["qm9"] == "molecule" and kinds["base"] == "image"
    assert kinds["latent"] == "image" and kinds["ae"] == "autoencoder" and kinds["maze"] == "maze"
    assert kinds["hf-pixel"] == "image"  # a local diffusers folder


def test_controlnet_form_samples_with_the_uploaded_control(client, runs):
    client, studio = client
    square = np.zeros((16, 16), dtype=np.uint8)
    square[4:12, 4] = square[4:12, 11] = square[4, 4:12] = square[11, 4:12] = 255
    job = run_job(client, studio, "control", control=png_url(square), control_scale=1.5, seed=3, n=2,
                  sampler="euler", nfe=3)
    pipe = Pipeline.load(runs / "control", "auto")
    control = {"images": [torch.from_numpy(square[None] / 255.0).float()], "scales": [1.5]}
    for output, seed in zip(job["outputs"], (3, 4)):
        expected = pipe.sample(SampleRequest(n=1, seed=seed, sampler="euler", nfe=3, control=control))[0]
        picture = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/{output['file']}").content))
        got = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
        want = ((expected.clamp(-1, 1) + 1) * 127.5).round()
        assert torch.equal(got, want), float((got - want).abs().max())


def test_controlnet_form_refuses_a_control_of_another_shape(client):
    client, _ = client
    wide = np.zeros((16, 40), dtype=np.uint8)
    response = client.post("/api/jobs", json={"run": "control", "form": "generate",
                                              "params": {"control": png_url(wide), "seed": 0, "n": 1}})
    assert response.status_code == 400 and "\n" not in response.json()["error"]
    assert "control" in response.json()["error"]


def test_molecule_form_writes_an_sdf_and_a_drawing_per_seed(client, runs):
    client, studio = client
    job = run_job(client, studio, "qm9", atoms=4, seed=7, n=2, sampler="euler", nfe=3)
    assert [(o["file"], o["download"], o["seed"]) for o in job["outputs"]] == [("000.png", "000.sdf", 7),
                                                                          ("001.png", "001.sdf", 8)]
    sdf = client.get(f"/api/jobs/{job['id']}/files/000.sdf").text
    pipe = Pipeline.load(runs / "qm9", "auto")
    x = pipe.sample(SampleRequest(n=1, seed=7, sampler="euler", nfe=3, atoms=4))
    from unnoise.io import write_samples

    expected = runs / "expected.sdf"
    write_samples(x, pipe.config.spec, expected)
    assert sdf == expected.read_text() and sdf.count("M  END") == 1
    picture = client.get(f"/api/jobs/{job['id']}/files/000.png").content
    assert picture[:4] == b"\x89PNG" and b"unnoise" in picture  # the settings chunk
    if HAS_RDKIT:
        from rdkit import Chem

        assert Chem.MolFromMolBlock(sdf, sanitize=False, removeHs=False).GetNumAtoms() == 4


def test_molecule_form_refuses_bad_values(client):
    client, _ = client
    response = client.post("/api/jobs", json={"run": "qm9", "form": "generate", "params": {"atoms": 0, "n": 1}})
    assert response.status_code == 400 and "atoms" in response.json()["error"]


def test_latent_runs_preview_their_x0_decoded_to_pixels(client, runs, monkeypatch):
    """The preview of a latent run is its x0 estimate decoded through the codec: an image of the run's size."""
    from unnoise.studio.service import JobContext

    client, studio = client
    previews = []
    callback = JobContext.callback

    def keep(self, *args):
        callback(self, *args)
        if self.job.preview is not None:
            previews.append(self.job.preview)

    monkeypatch.setattr(JobContext, "callback", keep)
    job = run_job(client, studio, "latent", seed=0, n=1, sampler="euler", nfe=4)
    assert previews and Image.open(io.BytesIO(previews[-1])).size == (32, 32)
    picture = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/000.png").content))
    assert picture.size == (32, 32)


def test_autoencoder_runs_reconstruct_an_upload(client, runs):
    client, studio = client
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3))
    response = client.post("/api/jobs", json={"run": "ae", "form": "reconstruct", "params": {"image": png_url(pixels)}})
    assert response.status_code == 200, response.text
    studio.queue.drain()
    job = client.get(f"/api/jobs/{response.json()['job']['id']}").json()
    assert job["status"] == "done" and job["outputs"][0]["psnr_db"] > 0
    pipe = Pipeline.load(runs / "ae", "auto")
    x = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    want = ((pipe.decode(pipe.encode(x)).clamp(-1, 1)[0] + 1) * 127.5).round()
    picture = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/000.png").content))
    assert torch.equal(torch.from_numpy(np.asarray(picture, dtype=np.float32)).permute(2, 0, 1), want)
    wrong = client.post("/api/jobs", json={"run": "ae", "form": "reconstruct",
                                           "params": {"image": png_url(pixels[:16])}})
    assert wrong.status_code == 400 and "field 'image'" in wrong.json()["error"]


def test_maze_runs_plan_from_a_start_to_a_goal(client, runs, tmp_path):
    from unnoise.planning.planner import plan_episode

    client, studio = client
    response = client.post("/api/jobs", json={"run": "maze", "form": "plan", "params": {
        "start": "1,1", "goal": "1,3", "nfe": 2, "sampler": "euler", "replan_every": 20, "episode_steps": 40,
        "seed": 4}})
    assert response.status_code == 200, response.text
    studio.queue.drain()
    job = client.get(f"/api/jobs/{response.json()['job']['id']}").json()
    assert job["status"] == "done" and job["outputs"][0]["plans"] == 2
    expected = plan_episode(Pipeline.load(runs / "maze", "auto"), (1, 1), (1, 3), tmp_path / "plan.png",
                            request=SampleRequest(sampler="euler", nfe=2), replan_every=20, seed=4, episode_steps=40)
    assert job["outputs"][0]["reached_at"] == expected["reached_at"]
    picture = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/000.png").content))
    assert np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(Image.open(tmp_path / "plan.png").convert("RGB")))
    wall = client.post("/api/jobs", json={"run": "maze", "form": "plan", "params": {"start": "0,0", "goal": "1,3"}})
    assert wall.status_code == 400 and "field 'start'" in wall.json()["error"]


def test_a_diffusers_folder_generates_like_its_pipeline(client, runs):
    client, studio = client
    job = run_job(client, studio, "hf-pixel", seed=2, n=1, sampler="euler", nfe=3)
    expected = Pipeline.load(runs / "hf-pixel", "auto").sample(SampleRequest(n=1, seed=2, sampler="euler", nfe=3))[0]
    picture = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/000.png").content))
    got = torch.from_numpy(np.asarray(picture, dtype=np.float32))
    got = got.permute(2, 0, 1) if got.ndim == 3 else got[None]
    assert torch.equal(got, ((expected.clamp(-1, 1) + 1) * 127.5).round())
