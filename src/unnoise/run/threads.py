"""CPU thread policy for training and sampling: never catastrophic on a busy machine.

Measured (benchmarks/fault_injection.py, "threads"): on 2 cores, a digits run with torch's default of one
thread per core slows down by an order of magnitude when another 2-thread torch process runs, because
OpenMP threads spin at every barrier waiting for a core the other process holds. Two things prevent it:

1. `prepare_thread_environment()` sets OMP_WAIT_POLICY=PASSIVE (waiting threads sleep instead of
   spinning) unless the user set it; it must run before torch is imported (the CLI does it first).
2. `choose_threads(requested)` picks the thread count when `train.threads` / `--threads` is 0 (auto):
   the usable cores minus those other processes already keep busy (1-minute load average), at least 1.
   An explicit positive value is used as given.

`apply_threads(requested)` does both the choice and torch.set_num_threads, and returns the count (the
trainer records it in the run's log).
"""
from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def prepare_thread_environment(environ=None) -> None:
    """Make idle OpenMP threads sleep rather than spin (unless the user chose); call before importing torch."""
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or taskset's limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(cores: int) -> int:
    """Cores other processes keep busy: the 1-minute load average, rounded, at most `cores`."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0
    return min(cores, int(load + 0.5))


def choose_threads(requested: int = 0, cores: int | None = None, busy: int | None = None) -> int:
    """The thread count to train or sample with: `requested` when positive, else the free cores (at least
    one). `cores` and `busy` default to this machine's usable and busy cores."""
    if requested and requested > 0:
        return int(requested)
    cores = usable_cores() if cores is None else cores
    busy = busy_cores(cores) if busy is None else busy
    return max(1, cores - busy)


def apply_threads(requested: int = 0) -> int:
    """Choose the thread count and give it to torch (intra-op pool); returns it."""
    import torch

    threads = choose_threads(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
