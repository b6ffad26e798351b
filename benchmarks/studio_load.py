"""The studio under load, over loopback: `unnoise serve` in its own process, N concurrent generation requests
against a tiny run (all must be queued and finish, none lost or failed), job latency p50/p95, `GET /` p95
while the queue is busy, server RSS before and after; then a crash in the middle: the server is killed
(SIGKILL) during a job with more waiting, restarted, and the history must show those jobs as interrupted
and every earlier job still done with its files.

    python benchmarks/studio_load.py --json                 # trains a tiny digits run first (seconds)
    python benchmarks/studio_load.py --json --runs RUNS --run NAME
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FINISHED = ("done", "failed", "cancelled", "interrupted")


def http(base: str, path: str, body=None, timeout: float = 30.0):
    """(status, parsed JSON or bytes) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, kind = response.read(), response.status, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(runs: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    server = subprocess.Popen([sys.executable, "-m", "unnoise", "serve", "--runs", str(runs), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-500:]}")
        try:
            if http(f"http://127.0.0.1:{port}", "/", timeout=2)[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not answer within 120 s")


def train_tiny(runs: Path) -> str:
    command = [sys.executable, "-m", "unnoise", "train", "--preset", "digits", "--out", str(runs / "digits"),
               "--steps", "20", "--batch-size", "16", "--set", "train.sample_every=0", "--set",
               "train.checkpoint_every=0", "--set", "model.network_options.hidden=64",
               "--set", "model.network_options.depth=2"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "digits"


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_finished(base: str, ids, timeout: float) -> dict:
    deadline, states = time.time() + timeout, {}
    while time.time() < deadline:
        states = {job_id: http(base, f"/api/jobs/{job_id}")[1] for job_id in ids}
        if all(s["status"] in FINISHED for s in states.values()):
            break
        time.sleep(0.2)
    return states


def load_phase(base: str, run: str, requests: int, nfe: int, pid: int) -> dict:
    """N concurrent POSTs, `GET /` timed meanwhile, until every job finished."""
    rss_before = rss_mib(pid)
    page_times, stop = [], threading.Event()

    def hit_page():
        while not stop.is_set():
            start = time.perf_counter()
            http(base, "/")
            page_times.append(time.perf_counter() - start)
            time.sleep(0.02)

    pinger = threading.Thread(target=hit_page, daemon=True)
    pinger.start()
    body = lambda seed: {"run": run, "form": "generate", "params": {"seed": seed, "n": 1, "nfe": nfe}}
    with ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(lambda seed: http(base, "/api/jobs", body(seed)), range(requests)))
    accepted = [a[1]["job"]["id"] for a in answers if a[0] == 200]
    refused = sorted({f"{a[0]}: {a[1].get('error') if isinstance(a[1], dict) else a[1][:80]}" for a in answers
                      if a[0] != 200})
    states = wait_finished(base, accepted, timeout=600)
    stop.set()
    pinger.join()
    statuses = [s["status"] for s in states.values()]
    latencies = [s["finished"] - s["created"] for s in states.values() if s.get("finished")]
    return {"requests": requests, "accepted": len(accepted), "done": statuses.count("done"),
            "failed": statuses.count("failed"), "lost": requests - len(states), "refused": refused,
            "job_latency_p50_s": round(statistics.median(latencies), 3),
            "job_latency_p95_s": round(percentile(latencies, 0.95), 3),
            "page_requests": len(page_times), "page_p95_ms": round(1000 * percentile(page_times, 0.95), 1),
            "rss_before_mib": round(rss_before, 1), "rss_after_mib": round(rss_mib(pid), 1)}, accepted


def crash_phase(runs: Path, base: str, run: str, server: subprocess.Popen, earlier) -> tuple[dict, subprocess.Popen]:
    """Kill the server during a long job with two more waiting, restart it, read the history."""
    long = {"run": run, "form": "generate", "params": {"seed": 0, "n": 1, "nfe": 2000, "sampler": "euler"}}
    ids = [http(base, "/api/jobs", long)[1]["job"]["id"] for _ in range(3)]
    deadline = time.time() + 60
    while http(base, f"/api/jobs/{ids[0]}")[1]["status"] != "running" and time.time() < deadline:
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)
    server.wait()
    port = int(base.rsplit(":", 1)[1])
    server = start_server(runs, port)
    rows = {row["id"]: row for row in http(base, "/api/history?limit=500")[1]["jobs"]}
    intact = all(rows.get(job_id, {}).get("status") == "done" for job_id in earlier)
    files = all(http(base, f"/api/jobs/{job_id}/files/000.png")[0] == 200 for job_id in earlier[:5])
    return {"killed_during": rows[ids[0]]["status"] if ids[0] in rows else "lost",
            "interrupted": sum(rows.get(i, {}).get("status") == "interrupted" for i in ids), "of": len(ids),
            "earlier_jobs_intact": intact and files}, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=Path, help="runs folder (default: a temporary one with a tiny digits run)")
    parser.add_argument("--run", default="digits")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--nfe", type=int, default=18)
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        runs = args.runs or Path(scratch)
        run = args.run if args.runs else train_tiny(runs)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(runs, port)
        try:
            result, accepted = load_phase(base, run, args.requests, args.nfe, server.pid)
            result["crash"], server = crash_phase(runs, base, run, server, accepted)
        finally:
            server.terminate()
            server.wait(10)
    result["wall_s"] = round(time.time() - started, 1)
    ok = (result["done"] == result["requests"] and result["page_p95_ms"] < 200 and
          result["crash"]["interrupted"] == result["crash"]["of"] and result["crash"]["earlier_jobs_intact"])
    result["pass"] = ok
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
