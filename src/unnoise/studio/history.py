"""The studio's history: a SQLite database in the runs folder (RUNS/.studio/history.sqlite3) recording every
job: its run and the hash of the weights it used, all settings, the seeds, output files, status and timings.
Jobs that were waiting or running when the server stopped are marked `interrupted` at the next start.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

COLUMNS = ("id", "run", "kind", "form", "weights", "settings", "seeds", "outputs", "status", "error",
           "created", "started", "finished")
JSON_COLUMNS = ("settings", "seeds", "outputs")
SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run TEXT NOT NULL, kind TEXT NOT NULL, form TEXT NOT NULL, weights TEXT,
    settings TEXT NOT NULL, seeds TEXT NOT NULL, outputs TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    created REAL NOT NULL, started REAL, finished REAL)"""


class History:
    """Rows of the jobs table, written as jobs change (one connection, serialised by a lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.interrupted = self._mark_interrupted()

    def _mark_interrupted(self) -> int:
        with self.lock:
            cursor = self.db.execute("UPDATE jobs SET status = 'interrupted', error = 'the server stopped during "
                                     "this job' WHERE status IN ('queued', 'running')")
            return cursor.rowcount

    def record(self, job, weights: str | None = None, seeds=()) -> None:
        """Insert or update the job's row (weights and seeds are kept from an earlier write when omitted)."""
        row = {"id": job.id, "run": job.run, "kind": job.kind, "form": job.form, "weights": weights,
               "settings": job.settings, "seeds": list(seeds), "outputs": job.outputs, "status": job.status,
               "error": job.error, "created": job.created, "started": job.started, "finished": job.finished}
        values = [json.dumps(row[c]) if c in JSON_COLUMNS else row[c] for c in COLUMNS]
        keep = "weights = COALESCE(excluded.weights, jobs.weights), seeds = CASE WHEN excluded.seeds = '[]' " \
               "THEN jobs.seeds ELSE excluded.seeds END"
        update = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in ("id", "weights", "seeds"))
        with self.lock:
            self.db.execute(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                            f"ON CONFLICT(id) DO UPDATE SET {update}, {keep}", values)

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _as_dict(row)

    def list(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """The newest jobs first."""
        with self.lock:
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY created DESC LIMIT ? OFFSET ?",
                                   (int(limit), int(offset))).fetchall()
        return [_as_dict(row) for row in rows]

    def close(self) -> None:
        with self.lock:
            self.db.close()


def _as_dict(row) -> dict:
    data = dict(zip(COLUMNS, row))
    for column in JSON_COLUMNS:
        data[column] = json.loads(data[column])
    return data
