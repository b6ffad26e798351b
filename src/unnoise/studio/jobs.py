"""The studio's job queue: jobs wait in an order the user controls (cancel, move), and `workers` threads run
them one at a time each, in that order. A running job reports its progress (step i of N, a preview of the
current x0 estimate) through its `JobContext`; cancelling it makes its next progress report (the sampler's
callback, after every step) raise `JobCancelled`, so it stops within one sampler step.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UnnoiseError

log = logging.getLogger("unnoise.studio")

FINISHED = ("done", "failed", "cancelled", "interrupted")


class JobCancelled(Exception):
    """Raised inside a running job once the user cancelled it."""


@dataclass
class Job:
    """One request: the run, form and checked params, and what became of it."""

    run: str
    kind: str
    form: str
    params: dict
    settings: dict  # params as recorded (uploads replaced by their hashes)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    status: str = "queued"  # queued | running | done | failed | cancelled | interrupted
    step: int = 0
    total: int = 0
    outputs: list = field(default_factory=list)
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    preview: bytes | None = None
    version: int = 0  # bumped at every change: event streams send a state when it moves
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def touch(self) -> None:
        self.version += 1

    def public(self, position: int | None = None) -> dict:
        """The job as the API returns it."""
        return {"id": self.id, "run": self.run, "kind": self.kind, "form": self.form, "settings": self.settings,
                "status": self.status, "step": self.step, "total": self.total, "outputs": self.outputs,
                "error": self.error, "created": self.created, "started": self.started, "finished": self.finished,
                "position": position, "has_preview": self.preview is not None, "version": self.version}


class JobQueue:
    """Pending jobs in order, and the worker threads running them through `execute(job)` (which sets the
    job's final status; an exception it lets through marks the job failed and the worker goes on)."""

    def __init__(self, execute: Callable[[Job], None], workers: int = 1, on_finish: Callable | None = None):
        if workers < 1:
            raise UnnoiseError(f"workers must be >= 1, got {workers}")
        self.execute, self.workers, self.on_finish = execute, workers, on_finish
        self.jobs: dict[str, Job] = {}
        self.pending: list[Job] = []
        self.changed = threading.Condition()
        self.threads: list[threading.Thread] = []
        self.stopping = False

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"unnoise-studio-worker-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        with self.changed:
            self.stopping = True
            for job in self.jobs.values():
                if job.status == "running":
                    job.cancel_requested.set()
            self.changed.notify_all()
        for thread in self.threads:
            thread.join(timeout)

    def submit(self, job: Job) -> Job:
        with self.changed:
            self.jobs[job.id] = job
            self.pending.append(job)
            self.changed.notify()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def position(self, job: Job) -> int | None:
        """0-based place in the queue of a waiting job, None otherwise."""
        with self.changed:
            return self.pending.index(job) if job in self.pending else None

    def cancel(self, job_id: str) -> Job:
        """Cancel a waiting job (at once) or a running one (at its next step); finished jobs stay as they are."""
        job = self.get(job_id)
        with self.changed:
            if job in self.pending:
                self.pending.remove(job)
                self._finish(job, "cancelled")
            elif job.status == "running":
                job.cancel_requested.set()
        return job

    def move(self, job_id: str, position: int) -> list[str]:
        """Put a waiting job at `position` (0 = next to run; clipped to the queue); the new order of ids."""
        job = self.get(job_id)
        with self.changed:
            if job not in self.pending:
                raise UnnoiseError(f"job {job_id} is {job.status}, not waiting in the queue")
            self.pending.remove(job)
            self.pending.insert(max(0, min(int(position), len(self.pending))), job)
            for waiting in self.pending:
                waiting.touch()
            return [waiting.id for waiting in self.pending]

    def run_next(self) -> Job | None:
        """Run the first waiting job on this thread (tests; the workers do the same); None when none waits."""
        with self.changed:
            if not self.pending:
                return None
            job = self._take()
        self._run(job)
        return job

    def drain(self) -> None:
        while self.run_next() is not None:
            pass

    def _take(self) -> Job:
        job = self.pending.pop(0)
        job.status, job.started = "running", time.time()
        job.touch()
        for waiting in self.pending:
            waiting.touch()
        return job

    def _work(self) -> None:
        while True:
            with self.changed:
                while not self.pending and not self.stopping:
                    self.changed.wait()
                if self.stopping:
                    return
                job = self._take()
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            self.execute(job)
            status = "done"
        except JobCancelled:
            status = "cancelled"
        except UnnoiseError as exc:
            job.error, status = str(exc), "failed"
        except Exception as exc:  # a failing job is recorded as failed; the server keeps serving
            log.exception("job %s failed", job.id)
            job.error, status = f"{type(exc).__name__}: {exc}".splitlines()[0][:500], "failed"
        self._finish(job, status)

    def _finish(self, job: Job, status: str) -> None:
        job.status, job.finished = status, time.time()
        job.touch()
        if self.on_finish is not None:
            self.on_finish(job)
