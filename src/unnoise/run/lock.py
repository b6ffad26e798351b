"""One writer per run directory: an advisory lock on RUN/.lock naming its holder.

    with run_lock(run_dir, purpose="train"):
        ...  # write into run_dir

The lock is `flock(2)` on RUN/.lock, so the kernel releases it when its holder dies, however it dies. The
file holds JSON {pid, host, started, purpose, command}: a second writer's one-line error names the holder.
A clean release deletes the file (while still holding the lock; an acquirer re-checks that the path still
names the file it locked); a file left by a killed holder is taken over with a warning naming it. Nested
`run_lock`s of one directory in one process share the outer lock. Where `fcntl` is missing (Windows) the
file is created with O_EXCL instead, and one naming a dead PID on this host is taken over.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import UnnoiseError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger("unnoise.run")

LOCK_NAME = ".lock"
_held: dict[str, int] = {}  # resolved run directory -> nesting depth, for locks this process holds


def _holder_record(purpose: str) -> dict:
    command = " ".join(["unnoise", *sys.argv[1:]]).replace("\n", " ")[:200]
    return {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}


def _parse_holder(raw: bytes) -> dict | None:
    try:
        holder = json.loads(raw.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def _read_fd(fd: int) -> dict | None:
    return _parse_holder(os.pread(fd, 4096, 0))


def describe_holder(holder: dict | None) -> str:
    """'train, pid 123 on host h since 2024-01-01 12:00:00 (unnoise train ...)' or a neutral phrase."""
    if not holder:
        return "another process (no holder recorded)"
    return (f"{holder.get('purpose', 'a writer')}, pid {holder.get('pid')} on host {holder.get('host')} "
            f"since {holder.get('started')} ({holder.get('command', '')})")


def _busy(run_dir: Path, holder: dict | None) -> UnnoiseError:
    return UnnoiseError(f"{run_dir} is in use by {describe_holder(holder)}; wait for it to finish, "
                        f"or write to another directory")


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # exists but not ours, or unreadable: assume alive
    return True


def _warn_stale(path: Path, previous: dict | None) -> None:
    if previous is not None:
        log.warning("%s: taking over the lock left by %s (that process is gone)", path,
                    describe_holder(previous))


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UnnoiseError(f"{path.parent}: cannot write the run's lock file ({exc.strerror})") from None


def _acquire_flock(run_dir: Path, record: dict) -> int:
    path = run_dir / LOCK_NAME
    for _ in range(20):
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_fd(fd)
            os.close(fd)
            raise _busy(run_dir, holder) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its previous holder deleted it between our open and our lock: try again
            os.close(fd)
            continue
        _warn_stale(path, _read_fd(fd))
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return fd
    raise _busy(run_dir, None)


def _acquire_exclusive(run_dir: Path, record: dict) -> int:
    """Without flock: create the file exclusively; take over one whose PID is dead on this host."""
    path = run_dir / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _parse_holder(path.read_bytes()) if path.exists() else None
            if holder and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                _warn_stale(path, holder)
                path.unlink(missing_ok=True)
                continue
            raise _busy(run_dir, holder) from None
        except OSError as exc:
            raise UnnoiseError(f"{run_dir}: cannot write the run's lock file ({exc.strerror})") from None
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        return fd
    raise _busy(run_dir, None)


@contextlib.contextmanager
def run_lock(run_dir: Path, purpose: str = "train", create: bool = True):
    """Hold the run directory's writer lock for the `with` block (creating the directory if `create`, and
    removing it again if the block fails before writing anything into it); a one-line UnnoiseError naming
    the holder if another process has it."""
    run_dir = Path(run_dir)
    created = create and not run_dir.exists()
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnnoiseError(f"{run_dir}: cannot create the run directory ({exc.strerror})") from None
    elif not run_dir.is_dir():
        raise UnnoiseError(f"run directory not found: {run_dir}")
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    record = _holder_record(purpose)
    fd = _acquire_flock(run_dir, record) if fcntl is not None else _acquire_exclusive(run_dir, record)
    _held[key] = 1
    failed = True
    try:
        yield
        failed = False
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(run_dir / LOCK_NAME)  # still ours: deleted before the lock is let go
        os.close(fd)
        if failed and created:  # a failure before anything was written leaves no empty run behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def lock_holder(run_dir: Path) -> dict | None:
    """The record of the writer holding the run's lock, or None; never locks or creates anything (a file
    naming a dead PID on this host is a killed holder's leftover: None)."""
    if os.path.realpath(run_dir) in _held:
        return _holder_record("this process")
    try:
        holder = _parse_holder((Path(run_dir) / LOCK_NAME).read_bytes())
    except OSError:
        return None
    if holder and holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
        return None
    return holder
