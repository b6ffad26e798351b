"""The studio's HTTP API through FastAPI's test client, on tiny runs trained here for two steps: generation,
restoration, queue order / move / cancel, history and PNG settings round trips, the reproducibility rule, and
every refused input (bad run names, paths out of the runs folder, oversize and non-image uploads, wrong mask
size, missing token, foreign Host)."""
import base64
import io
import json
import sqlite3

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from unnoise.cli.main import main  # noqa: E402
from unnoise.studio import Limits, Studio, create_app  # noqa: E402
from unnoise.studio.service import JobContext  # noqa: E402

TINY = ["--steps", "2", "--batch-size", "16", "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0",
        "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2"]
FAST = {"nfe": 4, "sampler": "euler"}
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-runs")
    assert main(["train", "--preset", "digits", "--out", str(root / "digits"), *TINY]) == 0
    assert main(["train", "--preset", "digits", "--out", str(root / "group" / "labelled"), *TINY,
                 "--set", "model.conditions=label"]) == 0
    assert main(["train", "--preset", "toy2d", "--out", str(root / "toy"), *TINY]) == 0
    assert main(["train", "--preset", "tones", "--out", str(root / "tones"), "--steps", "1", "--batch-size", "4",
                 "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "data.options.n=16",
                 "--set", "model.network_options.base_channels=8", "--set", "model.network_options.groups=4",
                 "--set", "model.network_options.channel_mult=[1]"]) == 0
    corpus = root / "corpus"  # a runs folder may hold other folders: they are not listed
    corpus.mkdir()
    for act in ("act1", "act2", "act3"):
        (corpus / f"{act}.txt").write_text("To be or not that is the question whether tis nobler,\n" * 40)
    text = {"data.name": "textfolder", "data.options.path": str(corpus), "data.options.context": "32",
            "model.network_options.depth": "1", "model.network_options.width": "32", "model.network_options.heads": "2",
            "train.batch_size": "8", "train.sample_every": "0", "sample.steps": "4"}
    assert main(["train", "--preset", "shakespeare-mdlm", "--steps", "2", "--out", str(root / "mdlm"),
                 *[a for k, v in text.items() for a in ("--set", f"{k}={v}")]]) == 0
    (root / "not-a-run").mkdir()
    (root / "secret.txt").write_text("outside every run")
    return root


@pytest.fixture
def studio(runs):
    studio = Studio(runs, "auto", start=False, limits=Limits(upload_bytes=4000, upload_pixels=64 * 64,
                                                             body_bytes=20000))
    yield studio
    studio.close()


@pytest.fixture
def client(studio):
    return TestClient(create_app(studio), base_url=LOCAL)


def submit(client, run="digits", form="generate", **params):
    response = client.post("/api/jobs", json={"run": run, "form": form, "params": params})
    assert response.status_code == 200, response.text
    return response.json()["job"]["id"]


def outputs(client, job_id):
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "done", job
    return [client.get(f"/api/jobs/{job_id}/files/{o['file']}").content for o in job["outputs"]]


def data_url(array, mode="L", fmt="PNG"):
    out = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(out, format=fmt)
    kind = "png" if fmt == "PNG" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(out.getvalue()).decode()


def assert_error(response, status, *fragments):
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_runs_are_listed_with_their_kind_and_forms(client):
    runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(runs) == {"digits", "group/labelled", "toy", "tones", "mdlm"}  # not-a-run has no config.json
    assert (runs["toy"]["kind"], runs["tones"]["kind"], runs["mdlm"]["kind"]) == ("points", "audio", "text")
    assert runs["digits"]["kind"] == "image" and runs["digits"]["forms"] == ["generate", "restore"]
    forms = client.get("/api/forms", params={"run": "group/labelled"}).json()["forms"]
    fields = {f["name"]: f for f in forms[0]["fields"]}
    assert fields["label"]["choices"] == [str(k) for k in range(10)]
    guidance = {"guidance", "guidance_low", "guidance_high", "guidance_rescale"}
    assert guidance | {"sampler", "nfe", "seed", "n"} <= set(fields)
    plain = client.get("/api/forms", params={"run": "digits"}).json()["forms"][0]["fields"]
    assert "label" not in {f["name"] for f in plain}


def test_audio_runs_give_wavs_with_spectrograms_and_point_runs_a_scatter(client, studio):
    audio = submit(client, "tones", seed=2, n=2, label="C4", **FAST)
    points = submit(client, "toy", seed=0, n=50, **FAST)
    studio.queue.drain()
    job = client.get(f"/api/jobs/{audio}").json()
    assert [(o["file"], o["type"], o["seed"], o["spectrogram"]) for o in job["outputs"]] == [
        ("000.wav", "audio", 2, "000.png"), ("001.wav", "audio", 3, "001.png")]
    wav = client.get(f"/api/jobs/{audio}/files/000.wav")
    assert wav.headers["content-type"] == "audio/wav" and wav.content[:4] == b"RIFF"
    assert client.get(f"/api/jobs/{audio}/files/001.png").headers["content-type"] == "image/png"
    assert client.get("/api/forms", params={"run": "tones"}).json()["forms"][0]["viewer"] == "audio"
    scatter = outputs(client, points)
    assert len(scatter) == 1 and scatter[0].startswith(b"\x89PNG")


def test_text_runs_give_the_pipelines_text_for_each_seed(client, studio, runs):
    from unnoise.pipeline import Pipeline, SampleRequest

    job_id = submit(client, "mdlm", seed=5, n=2, prompt="To be", length=16, nfe=4)
    studio.queue.drain()
    job = client.get(f"/api/jobs/{job_id}").json()
    pipe = Pipeline.load(runs / "mdlm", "auto")
    expected = [pipe.text.decode(pipe.sample(SampleRequest(n=1, seed=seed, prompt="To be", length=16, nfe=4)))[0]
                for seed in (5, 6)]
    assert [o["text"] for o in job["outputs"]] == expected and expected[0].startswith("To be")
    assert client.get(f"/api/jobs/{job_id}/files/001.txt").text == expected[1]


def test_a_kind_registered_later_serves_its_own_form(client, studio):
    from unnoise.studio import Form, Kind, register_kind
    from unnoise.studio.fields import Field
    from unnoise.studio.kinds import unregister_kind

    def execute(ctx):
        ctx.start(1)
        path = ctx.path("echo.txt")
        path.write_text(ctx.params["word"] * ctx.params["times"])
        ctx.add_output(path.name, "text", 0, text=path.read_text())
        ctx.advance()

    fields = lambda config: [Field("word", "text", "Word", "hi"), Field("times", "int", "Times", 2, 1, 5)]
    register_kind(Kind("echo", lambda config: config.data.name == "toy2d", (Form("echo", "Echo", fields, execute,
                                                                                  "text"),)))
    try:
        assert {r["name"]: r["kind"] for r in client.get("/api/runs").json()["runs"]}["toy"] == "echo"
        assert_error(client.post("/api/jobs", json={"run": "toy", "params": {"times": 9}}), 400, "field 'times'")
        job_id = submit(client, "toy", "echo", word="ab", times=3)
        studio.queue.drain()
        assert client.get(f"/api/jobs/{job_id}").json()["outputs"][0]["text"] == "ababab"
    finally:
        unregister_kind("echo")
    assert {r["name"]: r["kind"] for r in client.get("/api/runs").json()["runs"]}["toy"] == "points"


def test_generation_writes_pngs_whose_settings_reproduce_them(client, studio):
    job_id = submit(client, seed=3, n=2, **FAST)
    studio.queue.drain()
    first, second = outputs(client, job_id)
    settings = client.post("/api/png-settings", json={
        "png": "data:image/png;base64," + base64.b64encode(second).decode()}).json()["settings"]
    assert settings["params"] == {"seed": 4, "n": 1, "nfe": 4, "sampler": "euler"}
    assert settings["run"] == "digits" and settings["form"] == "generate" and len(settings["weights"]) == 64
    again = submit(client, settings["run"], settings["form"], **settings["params"])
    studio.queue.drain()
    assert outputs(client, again) == [second]
    assert Image.open(io.BytesIO(first)).size == (8, 8)


def test_seeds_reproduce_whatever_n_and_queue_order(client, studio):
    label = {"label": "3", "guidance": 2.0}
    singles = [submit(client, "group/labelled", seed=seed, n=1, **FAST, **label) for seed in (12, 11, 10)]
    batch = submit(client, "group/labelled", seed=10, n=3, **FAST, **label)
    client.post(f"/api/jobs/{batch}/move", json={"position": 1})  # runs between the single jobs
    studio.queue.drain()
    together = outputs(client, batch)
    alone = [outputs(client, job)[0] for job in reversed(singles)]
    assert together == alone
    assert len(set(together)) == 3


def test_queue_runs_in_the_order_set_by_move_and_skips_cancelled(client, studio):
    jobs = [submit(client, seed=seed, n=1, **FAST) for seed in range(4)]
    assert client.get("/api/jobs").json()["queue"] == jobs
    assert client.post(f"/api/jobs/{jobs[3]}/move", json={"position": 0}).json()["queue"] == [jobs[3], *jobs[:3]]
    assert client.get(f"/api/jobs/{jobs[1]}").json()["position"] == 2
    assert client.post(f"/api/jobs/{jobs[1]}/cancel", json={}).json()["status"] == "cancelled"
    order = []
    while (job := studio.queue.run_next()) is not None:
        order.append(job.id)
    assert order == [jobs[3], jobs[0], jobs[2]]
    assert_error(client.post(f"/api/jobs/{jobs[0]}/move", json={"position": 0}), 400, "done")
    assert_error(client.post(f"/api/jobs/{jobs[2]}/move", json={"position": -1}), 400, "position")
    history = {row["id"]: row for row in client.get("/api/history").json()["jobs"]}
    assert history[jobs[1]]["status"] == "cancelled" and history[jobs[1]]["outputs"] == []


def test_cancelling_a_running_job_stops_it_after_the_current_step(client, studio, monkeypatch):
    job_id = submit(client, seed=0, n=2, nfe=20, sampler="euler")
    step = JobContext.callback

    def cancel_at_step_five(self, *args):
        if self.job.step == 5:
            assert client.post(f"/api/jobs/{self.job.id}/cancel", json={}).status_code == 200
        step(self, *args)

    monkeypatch.setattr(JobContext, "callback", cancel_at_step_five)
    studio.queue.drain()
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["status"], job["step"], job["total"], job["outputs"]) == ("cancelled", 6, 40, [])
    assert client.get("/api/history").json()["jobs"][0]["status"] == "cancelled"


def test_a_cancel_inside_a_step_stops_before_the_next_model_call(client, studio, monkeypatch):
    pipe, _ = studio.cache.get(studio.folder.resolve("digits"))
    net, calls = pipe.denoiser.net, []
    forward = net.forward
    job_id = submit(client, seed=0, n=1, nfe=20, sampler="heun")  # 2 model calls per step

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # the first of the two calls of step 5 (heun's first step makes one)
            studio.queue.cancel(job_id)
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", counting)
    studio.queue.drain()
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["status"], len(calls), job["step"]) == ("cancelled", 8, 4)  # its second call never ran


def test_a_text_job_stops_before_the_next_model_call(client, studio, monkeypatch):
    pipe, _ = studio.cache.get(studio.folder.resolve("mdlm"))
    net, calls = pipe.text.net, []
    forward = net.forward
    job_id = submit(client, "mdlm", seed=0, n=2, length=16, nfe=12)

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            studio.queue.cancel(job_id)
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", counting)
    studio.queue.drain()
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["status"], len(calls), job["outputs"]) == ("cancelled", 3, [])


def test_progress_events_and_preview(client, studio):
    job_id = submit(client, seed=0, n=1, nfe=16, sampler="euler")
    studio.queue.drain()
    lines = [line for line in client.get(f"/api/jobs/{job_id}/events").text.splitlines() if line.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert (last["status"], last["step"], last["total"]) == ("done", 16, 16)
    preview = client.get(f"/api/jobs/{job_id}/preview.png")
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (8, 8)


def test_inpainting_keeps_the_known_pixels(client, studio):
    image = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:6] = 255  # white = fill in
    job_id = submit(client, form="restore", task="inpaint", image=data_url(image), mask=data_url(mask), n=2,
                    steps=8, seed=1)
    studio.queue.drain()
    for png in outputs(client, job_id):
        pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=int)
        assert np.abs(pixels - image)[mask == 0].max() <= 1
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["settings"]["params"]["image"].startswith("sha256:") and job["settings"]["uploads"] == ["image", "mask"]
    upload = client.get(f"/api/jobs/{job_id}/files/upload-mask.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(upload.content))), mask)


def test_a_failing_job_is_recorded_failed_and_the_next_one_runs(client, studio, monkeypatch):
    from unnoise.pipeline import Pipeline

    broken = submit(client, seed=0, n=1, **FAST)
    monkeypatch.setattr(Pipeline, "sample", lambda self, request: 1 / 0)
    studio.queue.drain()
    monkeypatch.undo()
    assert client.get(f"/api/jobs/{broken}").json()["error"] == "ZeroDivisionError: division by zero"
    fine = submit(client, seed=0, n=1, **FAST)
    studio.queue.drain()
    assert len(outputs(client, fine)) == 1
    assert {r["id"]: r["status"] for r in client.get("/api/history").json()["jobs"]}[broken] == "failed"


def test_history_survives_a_restart_and_marks_unfinished_jobs_interrupted(runs, studio, client):
    done = submit(client, seed=0, n=1, **FAST)
    studio.queue.drain()
    waiting = submit(client, seed=1, n=1, **FAST)
    studio.close()  # the server stops with one job waiting
    restarted = Studio(runs, "auto", start=False)
    try:
        rows = {row["id"]: row for row in restarted.history_page(500)}
        assert rows[waiting]["status"] == "interrupted" and rows[done]["status"] == "done"
        assert rows[done]["seeds"] == [0] and len(rows[done]["weights"]) == 64
        assert rows[done]["settings"]["params"] == {"seed": 0, "n": 1, **FAST}
        again = TestClient(create_app(restarted), base_url=LOCAL)
        assert again.get(f"/api/jobs/{done}/files/000.png").status_code == 200
    finally:
        restarted.close()
    with sqlite3.connect(runs / ".studio" / "history.sqlite3") as db:
        assert db.execute("SELECT status FROM jobs WHERE id = ?", (waiting,)).fetchone() == ("interrupted",)


@pytest.mark.parametrize("run", ["../digits", "digits/../digits", "/etc", "not-a-run", "secret.txt", ".studio",
                                 "nothing", "digits/checkpoint"])
def test_runs_outside_the_list_are_refused(client, run):
    assert_error(client.get("/api/forms", params={"run": run}), 404, "run")
    assert_error(client.post("/api/jobs", json={"run": run, "params": {}}), 404, "run")


def test_paths_out_of_a_job_or_the_static_folder_are_refused(client, studio):
    job_id = submit(client, seed=0, n=1, **FAST)
    studio.queue.drain()
    for path in (f"/api/jobs/{job_id}/files/..%2F..%2Fhistory.sqlite3", f"/api/jobs/{job_id}/files/%2Fetc%2Fpasswd",
                 f"/api/jobs/{job_id}/files/upload-image.png", "/api/jobs/..%2F..%2Fdigits/files/config.json",
                 "/static/..%2Fapp.py", "/static/%2E%2E%2Fservice.py", "/api/jobs/nope/preview.png"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "error" in response.json()
    assert client.get("/../../secret.txt").status_code == 404


def test_bad_inputs_get_one_line_json_errors(client):
    image = data_url(np.zeros((8, 8)))
    cases = [
        ({"run": "digits", "params": {"n": 0}}, 400, "field 'n'"),
        ({"run": "digits", "params": {"seed": "x"}}, 400, "field 'seed'"),
        ({"run": "digits", "params": {"steps": 3}}, 400, "unknown field 'steps'"),
        ({"run": "digits", "params": {"sampler": "magic"}}, 400, "'magic' is not one of"),
        ({"run": "digits", "form": "paint", "params": {}}, 400, "form 'paint'"),
        ({"run": "group/labelled", "params": {"label": "3", "guidance_low": 0.1}}, 400, "'guidance_high'"),
        ({"run": "group/labelled", "params": {"label": "10"}}, 400, "field 'label': '10' is not one of"),
        ({"run": "digits", "extra": 1}, 400, "unknown request key 'extra'"),
        ({"run": "digits", "form": "restore", "params": {"task": "inpaint", "image": image}}, 400, "field 'mask'"),
        ({"run": "digits", "form": "restore", "params": {"task": "inpaint", "image": image,
                                                         "mask": data_url(np.zeros((4, 4)))}}, 400, "mask size 4x4"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": data_url(np.zeros((9, 8)))}},
         400, "size 8x9, expected 8x8"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": image, "method": "repaint"}},
         400, "field 'method': method 'repaint' only inpaints"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": image, "method": "sr3"}},
         400, "field 'method': method 'sr3' needs a super-resolution run"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image":
          "data:image/png;base64," + base64.b64encode(b"GIF89a not an image").decode()}}, 400, "not a readable"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": "data:text/html;base64,PGI+"}},
         400, "PNG or JPEG"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": "data:image/png;base64,@@"}},
         400, "not valid base64"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": data_url(
            np.random.default_rng(0).integers(0, 256, (70, 70)))}}, 400, "over the limit of 4000"),
        ({"run": "digits", "form": "restore", "params": {"task": "deblur", "image": data_url(np.zeros((80, 80)))}},
         400, "6400 pixels, over the limit of 4096"),
    ]
    for body, status, fragment in cases:
        assert_error(client.post("/api/jobs", json=body), status, fragment)
    assert_error(client.post("/api/jobs", content=b"{", headers={"Content-Type": "application/json"}), 400, "JSON")
    assert_error(client.post("/api/jobs", content=b"x" * 30000, headers={"Content-Type": "application/json"}),
                 413, "over the limit")
    assert_error(client.post("/api/jobs", content=b"{}", headers={"Content-Type": "text/plain"}), 415, "JSON")
    assert_error(client.post("/api/png-settings", json={"png": data_url(np.zeros((2, 2)))}), 400, "no unnoise settings")
    assert_error(client.get("/api/history", params={"limit": 0}), 400, "limit")
    assert_error(client.get("/api/history", params={"limit": "many"}), 422, "limit")
    assert_error(client.get("/api/jobs/0123456789abcdef"), 404, "no such job")
    assert client.get("/api/jobs").json()["queue"] == []  # nothing refused was queued


def test_an_internal_error_is_a_json_500_and_the_server_goes_on(studio, monkeypatch):
    client = TestClient(create_app(studio), base_url=LOCAL, raise_server_exceptions=False)
    monkeypatch.setattr(Studio, "runs", lambda self: 1 / 0)
    assert_error(client.get("/api/runs"), 500, "internal error: ZeroDivisionError")
    assert client.get("/api/forms", params={"run": "digits"}).status_code == 200


def test_a_token_guards_every_request(studio):
    secret = "correct-horse-battery"
    guarded = TestClient(create_app(studio, token=secret), base_url="http://studio.example:7860")
    for path in ("/", "/static/app.js", "/api/runs"):
        assert_error(guarded.get(path), 401, "token")
    assert_error(guarded.get("/api/runs", headers={"Authorization": "Bearer wrong-token"}), 401, "token")
    assert guarded.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert guarded.get("/api/runs", headers={"X-Unnoise-Token": secret}).status_code == 200
    page = guarded.get("/", params={"token": secret})
    assert page.status_code == 200 and "unnoise studio" in page.text
    assert guarded.get("/api/runs").status_code == 200  # the cookie set by ?token= carries on


def test_without_a_token_only_loopback_hosts_same_origin_are_served(client, studio):
    page = client.get("/")
    assert page.status_code == 200 and client.get("/static/style.css").status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"] and "http" not in page.text.lower()
    foreign = TestClient(create_app(studio), base_url="http://attacker.example")
    assert_error(foreign.get("/api/runs"), 403, "loopback")
    assert_error(client.post("/api/jobs", json={}, headers={"Origin": "http://attacker.example"}), 403, "cross-origin")


def test_serve_refuses_a_public_address_without_a_token(user_error, runs, monkeypatch):
    monkeypatch.delenv("UNNOISE_TOKEN", raising=False)
    user_error(["serve", "--runs", str(runs), "--host", "0.0.0.0"], "--host 0.0.0.0", "--token")
    user_error(["serve", "--runs", str(runs / "nothing")], "--runs", "not a directory")
    user_error(["serve", "--runs", str(runs), "--token", "short"], "--token")


def test_loaded_models_are_kept_within_the_memory_budget_and_reloaded_when_retrained(runs):
    import os

    from unnoise.studio.runs import PipelineCache, pipeline_bytes

    digits, toy = runs / "digits", runs / "toy"
    cache = PipelineCache("auto", budget=1)  # any two models are over it: only the latest stays
    first, weights = cache.get(digits)
    assert cache.get(digits)[0] is first and pipeline_bytes(first) > 0
    cache.get(toy)
    assert [key[0] for key in cache.loaded] == [str(toy)]
    roomy = PipelineCache("auto", budget=1 << 30)
    kept = roomy.get(digits)[0]
    roomy.get(toy)
    assert roomy.get(digits)[0] is kept and len(roomy.loaded) == 2
    stat = (digits / "checkpoint").stat()
    os.utime(digits / "checkpoint", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # as a new save would
    reloaded, same_weights = roomy.get(digits)
    assert reloaded is not kept and same_weights == weights and len(roomy.loaded) == 2  # the stale one dropped
