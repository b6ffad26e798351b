"""A dependency-free progress line: step, loss, it/s, ETA; redraws in place on a terminal."""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Call `update(step, **fields)`; prints at most every `interval` seconds (always the last step)."""

    def __init__(self, total: int, desc: str = "", start: int = 0, stream=None, interval: float = 0.5):
        self.total, self.desc, self.start = total, desc, start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else max(interval, 10.0)
        self.t0 = time.perf_counter()
        self.last_print = -1e9

    def update(self, step: int, **fields) -> None:
        now = time.perf_counter()
        if step < self.total and now - self.last_print < self.interval:
            return
        self.last_print = now
        done = step - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        line = f"{self.desc} [{bar}] {step}/{self.total} {extra} {rate:.1f}it/s ETA {_clock(eta)}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and step >= self.total:
            self.stream.write("\n")
        self.stream.flush()
