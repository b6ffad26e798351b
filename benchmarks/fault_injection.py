"""Fault injection: kill -9 during training and checkpoint writes, damaged checkpoints, concurrent writers
and readers, overwrites, the bad-input battery, and training speed on a busy machine.

    python benchmarks/fault_injection.py --json            # everything (about 10 minutes on 2 cores)
    python benchmarks/fault_injection.py --only kills,threads

Sections (keys of the JSON):
  kills, corrupt_checkpoints, bit_exact_after_resume   a toy2d run checkpointing every step is killed with
      SIGKILL at random moments (>= 10 times) and resumed each time; every checkpoint left on disk is
      verified against its manifest, and the final weights are compared with an uninterrupted run's.
  damaged_resume_falls_back   checkpoint/ damaged in place: --resume uses the newest intact history entry.
  concurrent_writers_refused  a second trainer on a run being trained exits 2 naming the first one's pid.
  overwrite_refused           training into an existing run without --resume exits 2; the run is unchanged.
  false_corrupt_reads         a reader loads the run 200 times while its trainer checkpoints every step;
                              "busy, retry" answers are counted apart (busy_reads).
  bad_inputs, tracebacks, runs_damaged   from tests/integration/test_bad_inputs.py (cases passed, failures
                              showing a traceback, failures where the run changed) plus this script's own runs.
  threads                     digits training speed, idle and next to another 2-thread torch process, with
                              torch's default (one thread per core, spinning OpenMP waits) and with
                              unnoise's policy (run/threads.py).
Concurrent processes run with OMP_NUM_THREADS=1 unless the section is about threads.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOY = ["--preset", "toy2d", "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2",
       "--set", "data.options.n=256", "--set", "train.batch_size=32", "--set", "train.sample_every=0",
       "--set", "train.log_every=10", "--set", "train.threads=1"]
RECORD = {"tracebacks": 0, "runs_damaged": 0}


def unnoise(*args, env=None, **popen) -> subprocess.Popen:
    """Start `python -m unnoise ARGS` (stdout/stderr piped unless told otherwise)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([PY, "-m", "unnoise", *map(str, args)], env={**os.environ, **(env or ONE_THREAD)},
                            text=True, cwd=ROOT, **popen)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Wait for a process; return (exit code, stderr), counting tracebacks."""
    _, err = proc.communicate(timeout=timeout)
    RECORD["tracebacks"] += "Traceback" in (err or "")
    return proc.returncode, err or ""


def tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def model_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoint" / "model.safetensors"))


def verify_all(run: Path) -> int:
    """Number of sealed checkpoint directories in a run whose files do not match their manifest."""
    from unnoise.errors import UnnoiseError
    from unnoise.run.checkpoint import MARKER, verify_checkpoint

    bad = 0
    for directory in [run / "checkpoint", run / "best", *sorted((run / "history").glob("step_*"))]:
        if directory.is_dir() and not directory.name.endswith((".tmp", ".new")) and (directory / MARKER).exists():
            try:
                verify_checkpoint(directory)
            except UnnoiseError:
                bad += 1
    return bad


# ------------------------------------------------------------------------------------------ kills

def section_kills(work: Path, kills: int = 10, steps: int = 150) -> dict:
    straight = work / "straight"
    code, err = finish(unnoise("train", *TOY, "--steps", steps, "--set", "train.checkpoint_every=0",
                               "--out", straight))
    assert code == 0, err
    run, rng, done, corrupt = work / "killed", random.Random(0), 0, 0
    proc = unnoise("train", *TOY, "--steps", steps, "--set", "train.checkpoint_every=1", "--out", run)
    while done < kills:
        while not (run / "checkpoint").is_dir() and proc.poll() is None:  # first checkpoint written
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 1.0))
        if proc.poll() is not None:
            break  # finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done += 1
        corrupt += verify_all(run)
        proc = unnoise("train", "--resume", "--steps", steps, "--out", run)
    code, err = finish(proc)
    assert code == 0, err
    a, b = model_weights(straight), model_weights(run)
    exact = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    return {"kills": done, "corrupt_checkpoints": corrupt, "bit_exact_after_resume": bool(exact)}


def section_damaged_resume(work: Path) -> dict:
    """Damage checkpoint/ in place; --resume must fall back to history/ and say so."""
    run = work / "damaged"
    code, err = finish(unnoise("train", *TOY, "--steps", 20, "--set", "train.checkpoint_every=5", "--out", run))
    assert code == 0, err
    weights = run / "checkpoint" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    code, err = finish(unnoise("train", "--resume", "--steps", 25, "--out", run))
    return {"damaged_resume_falls_back": code == 0 and "damaged" in err and "history" in err}


# ------------------------------------------------------------------------------------------ writers and readers

def section_writers(work: Path) -> dict:
    """A second writer on a run in training is refused naming the first; an overwrite is refused."""
    run = work / "busy"
    first = unnoise("train", *TOY, "--steps", 100000, "--set", "train.checkpoint_every=50", "--out", run)
    while not (run / "checkpoint").is_dir() and first.poll() is None:
        time.sleep(0.1)
    before = tree_hashes(run / "history") if (run / "history").is_dir() else {}
    code, err = finish(unnoise("train", "--resume", "--steps", 100000, "--out", run))
    refused = code == 2 and str(first.pid) in err and len(err.strip().splitlines()) == 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    del before
    done = work / "done"
    code, err = finish(unnoise("train", *TOY, "--steps", 5, "--out", done))
    assert code == 0, err
    before = tree_hashes(done)
    code, err = finish(unnoise("train", *TOY, "--steps", 7, "--out", done))
    unchanged = tree_hashes(done) == before
    RECORD["runs_damaged"] += not unchanged
    return {"concurrent_writers_refused": bool(refused),
            "overwrite_refused": code == 2 and unchanged and "--resume" in err}


def section_readers(work: Path, reads: int = 200) -> dict:
    """Load the run `reads` times while its trainer checkpoints every step."""
    from unnoise.errors import UnnoiseError
    from unnoise.run.load import load_run

    run = work / "read"
    trainer = unnoise("train", *TOY, "--steps", 100000, "--set", "train.checkpoint_every=1", "--out", run)
    while not (run / "checkpoint").is_dir() and trainer.poll() is None:
        time.sleep(0.05)
    false_corrupt, busy, examples = 0, 0, []
    for _ in range(reads):
        try:
            load_run(run)
        except UnnoiseError as exc:
            if "busy" in str(exc):
                busy += 1
            else:
                false_corrupt += 1
                examples.append(str(exc))
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    return {"reads": reads, "false_corrupt_reads": false_corrupt, "busy_reads": busy,
            "corrupt_examples": examples[:3]}


# ------------------------------------------------------------------------------------------ the battery

def section_battery() -> dict:
    """Run the bad-input battery; count passed cases, tracebacks and changed runs among failures."""
    proc = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                           "tests/integration/test_bad_inputs.py"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD}, timeout=900)
    out = proc.stdout + proc.stderr
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|xfailed|xpassed|error)", out)}
    RECORD["tracebacks"] += len(re.findall(r"assert \"Traceback\" not in", out))
    RECORD["runs_damaged"] += out.count("the run directory changed")
    return {"bad_inputs": counts.get("passed", 0) - 1, "bad_inputs_failed": counts.get("failed", 0),
            "bad_inputs_xfailed": counts.get("xfailed", 0)}


# ------------------------------------------------------------------------------------------ threads

SPEED_WORKER = r"""
import json, os, sys, tempfile, time
policy, seconds = sys.argv[1], float(sys.argv[2])
import torch
from unnoise.run.config import config_from_dict
from unnoise.run.presets import preset
from unnoise.run.threads import apply_threads
from unnoise.run.training import build_trainer
config = config_from_dict(preset("digits"))
trainer = build_trainer(config, tempfile.mkdtemp(prefix="speed"), preview=False)
if policy == "chosen":
    threads = apply_threads(0)
else:  # torch's default: one thread per usable core (build_trainer applied the policy; undo it)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
for _ in range(5):
    trainer.train_step()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    trainer.train_step()
    steps += 1
print(json.dumps({"it_s": steps / (time.perf_counter() - start), "threads": threads}))
"""

COMPETITOR = r"""
import torch
torch.set_num_threads(2)
a = torch.randn(384, 384)
while True:
    a = torch.tanh(a @ a) * 0.5
"""


def _speed(policy: str, seconds: float, contended: bool) -> dict:
    from unnoise.run.threads import WAIT_POLICY

    competitor = None
    if contended:  # another 2-thread torch process with OpenMP's default (spinning) waits
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        competitor = subprocess.Popen([PY, "-c", COMPETITOR], env=env)
        time.sleep(2)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    if policy == "chosen":
        env["OMP_WAIT_POLICY"] = WAIT_POLICY
    try:
        out = subprocess.run([PY, "-c", SPEED_WORKER, policy, str(seconds)], env=env, capture_output=True,
                             text=True, timeout=seconds + 240, cwd=ROOT)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    RECORD["tracebacks"] += "Traceback" in out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_threads(seconds: float = 20) -> dict:
    idle_default = _speed("default", seconds, False)
    idle = _speed("chosen", seconds, False)
    contended_default = _speed("default", seconds, True)
    contended = _speed("chosen", seconds, True)
    return {"threads": {"idle_it_s": round(idle["it_s"], 2), "idle_threads": idle["threads"],
                        "idle_it_s_default": round(idle_default["it_s"], 2),
                        "default_threads": idle_default["threads"],
                        "contended_it_s_default": round(contended_default["it_s"], 2),
                        "contended_it_s_chosen": round(contended["it_s"], 2),
                        "contended_threads_chosen": contended["threads"],
                        "load_average": round(os.getloadavg()[0], 2)}}


SECTIONS = {"kills": section_kills, "damaged_resume": section_damaged_resume, "writers": section_writers,
            "readers": section_readers, "battery": section_battery, "threads": section_threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    results, t0 = {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unnoise-faults-") as tmp:
        for name in chosen:
            t = time.perf_counter()
            if name in ("battery", "threads"):
                results.update(SECTIONS[name]())
            else:
                work = Path(tmp) / name
                work.mkdir()
                results.update(SECTIONS[name](work))
            print(f"{name}: {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    results.update(RECORD, seconds=round(time.perf_counter() - t0))
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
