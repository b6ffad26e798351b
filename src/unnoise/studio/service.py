"""The studio without its web layer: runs, forms, the queue, the history and the job outputs, as plain Python
calls the HTTP routes (app.py) and the tests use.

Outputs live in RUNS/.studio/jobs/JOB_ID/ and are reached only by job id and a file name the job recorded.
"""
from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnnoiseError
from ..guide import DenoiserTransform
from .fields import check_params
from .history import History
from .jobs import FINISHED, Job, JobCancelled, JobQueue
from .kinds import kind_of
from .media import decode_data_url, open_image, png_bytes
from .runs import STUDIO_DIR, PipelineCache, RunFolder

PREVIEWS = 8  # previews per image while sampling
KEEP_IN_MEMORY = 500  # finished jobs answered from memory (with their previews); older ones from the history


@dataclass(frozen=True)
class Limits:
    """What one request may send: bytes of a request body, bytes and pixels of an uploaded image."""

    body_bytes: int = 16 << 20
    upload_bytes: int = 8 << 20
    upload_pixels: int = 4096 * 4096


@dataclass
class JobContext:
    """What a form's `execute` gets: the loaded pipeline and checked params, progress reporting (which
    raises JobCancelled once the job is cancelled) and writers for outputs."""

    job: Job
    pipe: object
    params: dict
    out_dir: Path
    images: dict  # upload field -> decoded PIL image
    settings: dict  # what every output's metadata records (run, weights, kind, form, params)
    preview_every: int = 1
    seeds: list = field(default_factory=list)

    @property
    def config(self):
        return self.pipe.config

    def image(self, name: str):
        return self.images[name]

    def start(self, total: int) -> None:
        self.job.total, self.job.step = int(total), 0
        self.preview_every = max(1, total // max(1, self.job.settings["params"].get("n") or 1) // PREVIEWS)
        self.job.touch()

    def check_cancelled(self) -> None:
        if self.job.cancel_requested.is_set():
            raise JobCancelled()

    def advance(self) -> None:
        self.job.step += 1
        self.job.touch()
        self.check_cancelled()

    def callback(self, i, sigma, x, x0) -> None:
        """The sampler callback: one step done; a preview of x0 every few steps (1- or 3-channel images; a
        latent run's x0 decoded through its codec first)."""
        if i % self.preview_every == 0 and x0 is not None:
            picture = self._in_data_space(x0[:1].detach())
            if picture is not None:
                self.job.preview = png_bytes(picture[0].float().clamp(-1, 1), {})
        self.advance()

    def _in_data_space(self, x0):
        """x0 (1, ...) as a previewable image (1, C, H, W) in data space, or None."""
        shape = tuple(self.config.data_shape)
        if self.config.spec.modality != "image" or shape[0] not in (1, 3):
            return None
        codec = getattr(self.pipe, "codec", None)
        if codec is not None and codec.kind != "identity" and tuple(x0.shape[1:]) != shape:
            x0 = self.pipe.decode(x0)
        return x0 if tuple(x0.shape[1:]) == shape else None

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def add_output(self, name: str, kind: str, seed: int, **extra) -> None:
        self.seeds.append(seed)
        self.job.outputs.append({"file": name, "type": kind, "seed": seed, **extra})
        self.job.touch()

    def write_png(self, name: str, image, seed: int, **extra) -> None:
        """An output image with its own settings embedded: the job's, with this image's seed and n = 1;
        `extra` goes into its output record (e.g. download: a file written beside it)."""
        settings = {**self.settings, "params": {**self.settings["params"], "seed": seed, "n": 1}}
        self.path(name).write_bytes(png_bytes(image, settings))
        self.add_output(name, "image", seed, **extra)


class CancellableDenoiser(DenoiserTransform):
    """The run's denoiser, checking before every model call whether its job was cancelled (so a job stops
    within one model call, also inside a step or while `auto` calibrates). Transparent otherwise."""

    def __init__(self, D, check):
        super().__init__(D)
        self.check = check

    def denoised(self, x, sigma, cond, inner):
        self.check()
        return inner(x, sigma, cond)

    def __getattr__(self, name):  # anything else a pipeline reads from its denoiser
        if name in ("D", "check"):
            raise AttributeError(name)
        return getattr(self.D, name)


class CancellableNetwork:
    """A text model's network, checking before every call whether its job was cancelled; transparent
    otherwise (the samplers only call it and read its attributes)."""

    def __init__(self, net, check):
        self.net, self.check = net, check

    def __call__(self, *args, **kwargs):
        self.check()
        return self.net(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("net", "check"):
            raise AttributeError(name)
        return getattr(self.net, name)


def cancellable(pipe, check):
    """A shallow copy of the pipeline (sharing its conditions, calibrations and weights) whose model checks
    `check` before every model call: the denoiser, or for a text run its network."""
    job_pipe = copy.copy(pipe)
    if getattr(pipe, "text", None) is not None:
        text = copy.copy(pipe.text)
        object.__setattr__(text, "net", CancellableNetwork(pipe.text.net, check))  # not a registered module
        job_pipe.text = job_pipe.denoiser = text
        return job_pipe
    job_pipe.denoiser = CancellableDenoiser(pipe.denoiser, check)
    return job_pipe


class Studio:
    """Runs under a folder, served through forms and one job queue, with a history on disk."""

    def __init__(self, runs: Path, device="auto", *, workers: int = 1, limits: Limits = Limits(),
                 memory_budget: int = 4 << 30, start: bool = True):
        from ..device import resolve_device

        self.folder = RunFolder(runs)
        self.limits = limits
        self.cache = PipelineCache(resolve_device(device), memory_budget)
        self.state_dir = self.folder.root / STUDIO_DIR
        self.history = History(self.state_dir / "history.sqlite3")
        self.queue = JobQueue(self._execute, workers, on_finish=self._finished)
        self.uploads: dict[str, dict] = {}  # job id -> decoded images, until the job runs
        if start:
            self.queue.start()

    def close(self) -> None:
        self.queue.stop()
        self.history.close()

    # runs and forms
    def runs(self) -> list[dict]:
        listed = []
        for name in self.folder.names():
            try:
                config = self._config_at(self.folder.root / name)  # listed names need no resolve (a rescan each)
                kind = kind_of(config)
            except UnnoiseError as exc:
                listed.append({"name": name, "kind": None, "error": str(exc)})
                continue
            listed.append({"name": name, "kind": kind.name, "modality": config.spec.modality,
                           "shape": list(config.data_shape), "forms": [f.name for f in kind.forms]})
        return listed

    def run_config(self, name: str):
        """The config of run `name` (resolved under the runs folder)."""
        return self._config_at(self.folder.resolve(name))

    def _config_at(self, path: Path):
        """The config of the run at `path`; a diffusers folder's comes from loading it (kept in the pipeline
        cache)."""
        from ..interop import is_diffusers_folder
        from ..run.load import read_run_config

        if is_diffusers_folder(path):
            return self.cache.get(path)[0].config
        return read_run_config(path)

    def forms(self, name: str) -> dict:
        config = self.run_config(name)
        kind = kind_of(config)
        return {"run": name, "kind": kind.name, "modality": config.spec.modality, "shape": list(config.data_shape),
                "forms": [{"name": f.name, "title": f.title, "viewer": f.viewer,
                           "fields": [x.describe() for x in f.fields(config)]} for f in kind.forms]}

    # jobs
    def submit(self, request: dict) -> Job:
        """Check a job request {run, form, params} (uploads decoded with the limits) and queue it."""
        if not isinstance(request, dict):
            raise UnnoiseError("the request body must be a JSON object {run, form, params}")
        unknown = sorted(set(request) - {"run", "form", "params"})
        if unknown:
            raise UnnoiseError(f"unknown request key {unknown[0]!r}; expected run, form, params")
        run = request.get("run")
        config = self.run_config(run)
        kind = kind_of(config)
        form = kind.form(request.get("form") or kind.forms[0].name)
        fields = form.fields(config)
        params = check_params(fields, request.get("params", {}))
        images, recorded = self._decode_uploads(fields, params)
        if form.check is not None:
            form.check(config, params, images)
        settings = {"run": run, "kind": kind.name, "form": form.name, "params": recorded}
        job = Job(run=run, kind=kind.name, form=form.name, params=params, settings=settings)
        self.uploads[job.id] = images
        self._store_uploads(job, fields, params)
        self.history.record(job)
        return self.queue.submit(job)

    def _decode_uploads(self, fields, params) -> tuple[dict, dict]:
        images, recorded = {}, dict(params)
        for f in fields:
            if f.type in ("image", "mask") and params.get(f.name) is not None:
                data, fmt = decode_data_url(params[f.name], self.limits.upload_bytes, f"field {f.name!r}")
                images[f.name] = open_image(data, self.limits.upload_pixels, f"field {f.name!r}", fmt)
                recorded[f.name] = "sha256:" + hashlib.sha256(data).hexdigest()
        return images, recorded

    def _store_uploads(self, job: Job, fields, params) -> None:
        """Keep each upload as JOB_DIR/upload-FIELD.png (history: reuse these settings)."""
        names = []
        for f in fields:
            if f.name in self.uploads[job.id]:
                out = io.BytesIO()
                self.uploads[job.id][f.name].save(out, format="PNG")
                self.job_dir(job.id).mkdir(parents=True, exist_ok=True)
                (self.job_dir(job.id) / f"upload-{f.name}.png").write_bytes(out.getvalue())
                names.append(f.name)
        job.settings["uploads"] = names

    def _finished(self, job: Job) -> None:
        """Record the final state; drop the job's uploads from memory, and the oldest finished jobs beyond
        KEEP_IN_MEMORY (the history still has them)."""
        self.uploads.pop(job.id, None)
        job.params = job.settings["params"]  # uploads as their hashes: the data URLs can be megabytes
        self.history.record(job)
        finished = [j for j in list(self.queue.jobs.values()) if j.status in FINISHED]
        for old in sorted(finished, key=lambda j: j.finished or 0)[:-KEEP_IN_MEMORY]:
            self.queue.jobs.pop(old.id, None)

    def job_dir(self, job_id: str) -> Path:
        return self.state_dir / "jobs" / job_id

    def _execute(self, job: Job) -> None:
        images = self.uploads.pop(job.id, {})
        self.history.record(job)
        pipe, weights = self.cache.get(self.folder.resolve(job.run))
        out_dir = self.job_dir(job.id)
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = {**{k: v for k, v in job.settings.items() if k != "uploads"}, "weights": weights}
        context = JobContext(job, pipe, job.params, out_dir, images, settings)
        context.pipe = cancellable(pipe, context.check_cancelled)
        form = kind_of(pipe.config).form(job.form)
        try:
            form.execute(context)
        finally:
            self.history.record(job, weights=weights, seeds=context.seeds)

    def job(self, job_id: str) -> dict:
        """The job's state: live while this server knows it, else its history row."""
        if job_id in self.queue.jobs:
            job = self.queue.jobs[job_id]
            return job.public(self.queue.position(job))
        row = self.history.get(job_id)
        if row is None:
            raise LookupError(f"job {job_id[:40]!r}: no such job")
        return {**row, "position": None, "has_preview": False}

    def output_file(self, job_id: str, name: str) -> Path:
        """The path of a file a job recorded (an output, its spectrogram or download, or an upload); LookupError
        otherwise."""
        job = self.job(job_id)
        allowed = {o.get(key) for o in job["outputs"] for key in ("file", "spectrogram", "download")} - {None}
        allowed |= {f"upload-{u}.png" for u in job["settings"].get("uploads", [])}
        if name not in allowed:
            raise LookupError(f"job {job_id}: no file {name[:80]!r}")
        return self.job_dir(job["id"]) / name

    def history_page(self, limit: int = 50, offset: int = 0) -> list[dict]:
        return self.history.list(limit, offset)
