"""Few-step students on digits: progressive distillation and consistency distillation against their teacher
and against the best training-free sampler at the same number of model calls.

Prints JSON: for the teacher (its own sampler at NFE 10 and 50), every student at 1, 2, 4 steps and the best
training-free sampler at 1, 2, 4 calls, the Frechet distance of the project's digit-classifier features
(eval/features.py) to held-out real digits (`fd_real`; 297 images, so it has a floor) and to the teacher's own
samples at NFE 50 (`fd_teacher`), plus training times (distillation as a fraction of the teacher's).

    python benchmarks/distillation.py --json                        # full: estimated 40-60 min on 2 quiet cores
    python benchmarks/distillation.py --json --quick                # a few minutes, rough figures
    python benchmarks/distillation.py --json --teacher runs/digits  # reuse a trained digits run
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

FULL = {"teacher_steps": 8000, "distill_steps": 2000, "cd_steps": 6000, "first_round": 64, "n": 5000, "network": {}}
# --quick: a smaller network and short runs, to check the whole path end to end on a busy CPU
QUICK = {"teacher_steps": 1000, "distill_steps": 150, "cd_steps": 400, "first_round": 16, "n": 300,
         "network": {"hidden": 256, "depth": 3}}
FREE_SAMPLERS = ("euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m")  # training-free, deterministic


def train_teacher(out: Path, steps: int, network: dict) -> float:
    """The digits preset (the `make demo` run) for `steps` steps on the train split (the 297 test digits stay
    held out for fd_real), its network options updated with `network`; returns its training seconds."""
    from unnoise.run.config import config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    d = preset("digits")
    d["train"].update(steps=steps, sample_every=0)
    d["model"]["network_options"].update(network)
    d["data"]["options"] = {"split": "train"}
    return train_run(config_from_dict(d), out)["seconds"]


def teacher_seconds(run: Path) -> float | None:
    """Training seconds recorded in a run's metrics (the last logged line's), if any."""
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1]).get("seconds") if lines else None


class Scorer:
    """FD of generated digits to held-out real digits and to the teacher's own NFE-50 samples."""

    def __init__(self, teacher_samples: torch.Tensor):
        from unnoise.data import load_dataset
        from unnoise.eval.features import digits_extractor

        self.extractor = digits_extractor()
        self.real = self.features(load_dataset("digits", split="test").x)
        self.reference = self.features(teacher_samples)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor.features(x.clamp(-1, 1)).double()

    def __call__(self, samples: torch.Tensor) -> dict:
        from unnoise.eval.metrics import fd

        f = self.features(samples)
        return {"fd_real": round(fd(f, self.real), 3), "fd_teacher": round(fd(f, self.reference), 3)}


def sample(run: Path, n: int, **request) -> torch.Tensor:
    from unnoise.pipeline import Pipeline, SampleRequest

    return Pipeline.load(run, device="auto").sample(SampleRequest(n=n, seed=10_000, **request))


def best_free(teacher: Path, n: int, nfe: int, score: Scorer) -> dict:
    """The training-free sampler with the lowest FD to the real digits at `nfe` model calls."""
    results = []
    for name in FREE_SAMPLERS:
        scores = score(sample(teacher, n, sampler=name, nfe=nfe))
        results.append({"sampler": name, **scores})
    return min(results, key=lambda r: r["fd_real"])


def distill(teacher: Path, out: Path, method: str, settings: dict) -> dict:
    from unnoise.run.distill_rounds import distill_run

    train = {"steps": settings["distill_steps" if method == "progressive" else "cd_steps"], "sample_every": 0,
             "lr": 2e-4, "warmup_steps": 0, "lr_schedule": "constant", "ema_decay": 0.995}
    return distill_run(teacher, out, method, nfe=1, teacher_steps=settings["first_round"], train=train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quick", action="store_true", help="small teacher, short rounds, 400 samples")
    parser.add_argument("--teacher", type=Path, help="an existing digits run instead of training one")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a new temporary folder)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="unnoise-distill-"))
    t0 = time.perf_counter()
    teacher = args.teacher or work / "teacher"
    teacher_train = teacher_seconds(teacher) if args.teacher else train_teacher(teacher, settings["teacher_steps"],
                                                                                   settings["network"])
    n = settings["n"]
    teacher_50 = sample(teacher, n, nfe=50)
    score = Scorer(teacher_50)
    result = {"settings": settings, "quick": args.quick, "threads": torch.get_num_threads(),
              "teacher": {"train_seconds": teacher_train and round(teacher_train, 1),
                          "nfe10": score(sample(teacher, n, nfe=10)), "nfe50": score(teacher_50)}}
    runs = {}
    for method in ("progressive", "consistency"):
        runs[method] = distill(teacher, work / method, method, settings)
    result["distill_seconds"] = {m: r["seconds"] for m, r in runs.items()}
    if teacher_train:
        result["distill_fraction_of_teacher"] = {m: round(r["seconds"] / teacher_train, 3) for m, r in runs.items()}
    for nfe in (1, 2, 4):
        progressive = {r["steps"]: Path(r["run"]) for r in runs["progressive"]["rounds"]}
        result[f"nfe{nfe}"] = {"progressive": score(sample(progressive[nfe], n, nfe=nfe)),
                               "consistency": score(sample(work / "consistency", n, nfe=nfe)),
                               "best_training_free": best_free(teacher, n, nfe, score)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["work"] = str(work)
    print(json.dumps(result))
    if not args.json:
        print(f"runs in {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
