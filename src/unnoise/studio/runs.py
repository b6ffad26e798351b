"""The runs the studio serves: every run directory under the runs folder (found by its config.json, up to a few
levels deep), addressed by its path relative to that folder and never by anything outside it; and the loaded
pipelines, kept in memory least-recently-used first within a byte budget.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

from ..errors import UnnoiseError

MAX_DEPTH = 3
STUDIO_DIR = ".studio"  # the studio's own files inside the runs folder (history, job outputs)
NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class RunFolder:
    """The runs under `root`: listed, and resolved from a name with every escape refused."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise UnnoiseError(f"--runs {root}: not a directory")

    def names(self) -> list[str]:
        """Relative names (with '/') of the run directories under the root, sorted."""
        found: list[str] = []
        self._scan(self.root, 0, found)
        return sorted(found)

    def _scan(self, folder: Path, depth: int, found: list) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                continue
            if is_run_directory(entry):
                found.append(entry.relative_to(self.root).as_posix())
            elif depth + 1 < MAX_DEPTH:
                self._scan(entry, depth + 1, found)

    def resolve(self, name) -> Path:
        """The directory of run `name`: a listed run under the root (no '..', no absolute path, no link
        leading out); a one-line error otherwise."""
        if not isinstance(name, str) or not NAME.match(name) or any(p in (".", "..") for p in name.split("/")):
            raise LookupError(f"run {str(name)[:80]!r}: not a run name under the runs folder")
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not is_run_directory(path):
            raise LookupError(f"run {name!r}: no such run under the runs folder")
        if name.split("/")[0] == STUDIO_DIR or name not in self.names():
            raise LookupError(f"run {name!r}: no such run under the runs folder")
        return path


def is_run_directory(path: Path) -> bool:
    """An unnoise run (config.json) or a local diffusers model folder (interop/: model_index.json or
    scheduler/scheduler_config.json)."""
    from ..interop import is_diffusers_folder

    return (path / "config.json").is_file() or is_diffusers_folder(path)


def pipeline_bytes(pipe) -> int:
    """Memory of a loaded pipeline's parameters and buffers."""
    model = getattr(pipe.denoiser, "net", pipe.denoiser)
    tensors = [*model.parameters(), *model.buffers()] if hasattr(model, "parameters") else []
    return sum(t.numel() * t.element_size() for t in tensors)


def _weights_version(path: Path) -> tuple:
    """Identity of the run's live checkpoint folder (replaced atomically at every save)."""
    try:
        info = (Path(path) / "checkpoint").stat()
    except OSError:
        return ()
    return info.st_ino, info.st_mtime_ns


class PipelineCache:
    """Loaded pipelines (with their in-memory calibrations), evicted least recently used first when their
    parameters together pass `budget` bytes (the one just loaded always stays)."""

    def __init__(self, device, budget: int = 4 << 30):
        self.device, self.budget = device, budget
        self.loaded: OrderedDict = OrderedDict()  # (path, checkpoint version) -> (pipeline, bytes, weights hash)
        self.lock = threading.Lock()

    def get(self, path: Path):
        """(pipeline, weights hash) of the run at `path`, loading it when needed."""
        from ..pipeline import Pipeline
        from ..sample.auto.cache import weights_sha256

        key = (str(path), _weights_version(path))  # a retrained run (new checkpoint) is loaded again
        with self.lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                pipe, _, weights = self.loaded[key]
                return pipe, weights
            for stale in [k for k in self.loaded if k[0] == key[0]]:  # an earlier checkpoint of this run
                del self.loaded[stale]
            pipe = Pipeline.load(path, device=self.device)
            weights = weights_sha256(pipe.denoiser)
            self.loaded[key] = (pipe, pipeline_bytes(pipe), weights)
            while len(self.loaded) > 1 and sum(entry[1] for entry in self.loaded.values()) > self.budget:
                self.loaded.popitem(last=False)
            return pipe, weights
