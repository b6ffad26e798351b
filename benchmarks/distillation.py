"""Few-step students on digits and shapes: progressive distillation and consistency distillation against
their teacher and against the best training-free sampler at the same number of model calls.

Prints JSON, per dataset: the teacher (its own sampler at NFE 10 and 50), every student at 1, 2, 4 steps and
the best training-free sampler at 1, 2, 4 calls, each scored by the Frechet distance of the dataset's
feature classifier (eval/features.py) to held-out real images (`fd_real`; digits has only 297 test images,
so it has a floor) and to the teacher's own samples at NFE 50 (`fd_teacher`, no data-size floor; the
teacher's NFE-50 samples from other seeds give that column's floor), the training times (distillation as a
fraction of the teacher's) and the issue's targets. Writes a grid per dataset (teacher@50, then the
students at 1, 2 and 4 steps, one row each; same seeds) under --figures.

    python benchmarks/distillation.py --json                              # full: digits ~1 h, shapes ~3 h on one core
    python benchmarks/distillation.py --json --quick                      # a few minutes, rough figures
    python benchmarks/distillation.py --json --datasets digits --teacher digits=runs/digits   # reuse a run
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# per dataset: the teacher's preset and steps, distillation steps (per progressive round / consistency), the
# first round's teacher DDIM steps, samples per cell and network overrides
FULL = {
    # a distillation step costs ~1.7 (progressive: two teacher calls) or ~1.2 (consistency) teacher training
    # steps, so these budgets keep distillation within the teacher's training time, as the issue asks
    "digits": {"preset": "digits", "teacher_steps": 8000, "distill_steps": 1000, "cd_steps": 5000,
               "first_round": 16, "n": 5000, "network": {}},
    # the U-Net costs ~1.4 s a training step on one core: about 3 hours in all
    "shapes": {"preset": "shapes", "teacher_steps": 3600, "distill_steps": 450, "cd_steps": 2000,
               "first_round": 16, "n": 2000, "network": {}},
}
# --quick: smaller networks and short runs, to check the whole path end to end on a busy CPU
QUICK = {
    "digits": {"preset": "digits", "teacher_steps": 1000, "distill_steps": 150, "cd_steps": 400,
               "first_round": 16, "n": 300, "network": {"hidden": 256, "depth": 3}},
    "shapes": {"preset": "shapes", "teacher_steps": 150, "distill_steps": 20, "cd_steps": 40,
               "first_round": 8, "n": 64, "network": {"base_channels": 16}},
}
FREE_SAMPLERS = ("euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m")  # training-free, deterministic
STUDENT_NFES = (1, 2, 4)
# the ratios to teacher@50 (fd_real): 4-step progressive, 2-step consistency, 1-step of either
RATIO_TARGETS = {("progressive", 4): 1.5, ("consistency", 2): 2.0, ("progressive", 1): 3.0,
                 ("consistency", 1): 3.0}
GRID_SEED, GRID_N = 20_000, 10


def train_teacher(out: Path, settings: dict) -> float:
    """The dataset's preset for `teacher_steps` on its train split (held-out images stay out for fd_real),
    its network options updated with `network`; returns its training seconds."""
    from unnoise.run.config import config_from_dict
    from unnoise.run.presets import preset
    from unnoise.run.training import train_run

    d = preset(settings["preset"])
    d["train"].update(steps=settings["teacher_steps"], sample_every=0)
    d["model"]["network_options"].update(settings["network"])
    d["data"]["options"] = {**d["data"].get("options", {}), "split": "train"}
    return train_run(config_from_dict(d), out)["seconds"]


def teacher_seconds(run: Path) -> float | None:
    """Training seconds recorded in a run's metrics (the last logged line's), if any."""
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1]).get("seconds") if lines else None


def heldout_real(dataset: str, n: int) -> torch.Tensor:
    """Real images never trained on: digits' 297-image test split; n fresh shapes renders of the test split."""
    from unnoise.data import load_dataset

    if dataset == "digits":
        return load_dataset("digits", split="test").x
    return load_dataset("shapes", split="test", objects="1", n=n).x


class Scorer:
    """FD of generated images to held-out real images and to the teacher's own NFE-50 samples."""

    def __init__(self, dataset: str, teacher_samples: torch.Tensor):
        from unnoise.eval.features import extractor_for

        self.extractor = extractor_for(dataset)
        self.real = self.features(heldout_real(dataset, len(teacher_samples)))
        self.reference = self.features(teacher_samples)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor.features(x.clamp(-1, 1)).double()

    def __call__(self, samples: torch.Tensor) -> dict:
        from unnoise.eval.metrics import fd

        f = self.features(samples)
        return {"fd_real": round(fd(f, self.real), 3), "fd_teacher": round(fd(f, self.reference), 3)}


def sample(run: Path, n: int, seed: int = 10_000, **request) -> torch.Tensor:
    from unnoise.pipeline import Pipeline, SampleRequest

    return Pipeline.load(run, device="auto").sample(SampleRequest(n=n, seed=seed, **request))


def best_free(teacher: Path, n: int, nfe: int, score: Scorer) -> dict:
    """The training-free sampler with the lowest FD to the real images at `nfe` model calls (all listed)."""
    results = [{"sampler": name, **score(sample(teacher, n, sampler=name, nfe=nfe))} for name in FREE_SAMPLERS]
    best = min(results, key=lambda r: r["fd_real"])
    return {**best, "all": {r["sampler"]: [r["fd_real"], r["fd_teacher"]] for r in results}}


def distill(teacher: Path, out: Path, method: str, settings: dict) -> dict:
    from unnoise.run.distill_rounds import distill_run

    train = {"steps": settings["distill_steps" if method == "progressive" else "cd_steps"], "sample_every": 0,
             "lr": 2e-4, "warmup_steps": 0, "lr_schedule": "constant", "ema_decay": 0.995}
    return distill_run(teacher, out, method, nfe=1, teacher_steps=settings["first_round"], train=train)


def targets(result: dict) -> dict:
    """The issue's targets on fd_real: ratios to teacher@50, every student below the best training-free
    sampler at its NFE, distillation time at most the teacher's training time."""
    teacher50 = result["teacher"]["nfe50"]["fd_real"]
    out = {}
    for (method, nfe), limit in RATIO_TARGETS.items():
        ratio = result[f"nfe{nfe}"][method]["fd_real"] / teacher50
        out[f"{method}{nfe}_ratio"] = {"ratio": round(ratio, 3), "target": limit, "met": ratio <= limit}
    out["students_beat_training_free"] = all(
        result[f"nfe{nfe}"][method]["fd_real"] < result[f"nfe{nfe}"]["best_training_free"]["fd_real"]
        for nfe in STUDENT_NFES for method in ("progressive", "consistency"))
    fractions = result.get("distill_fraction_of_teacher")
    out["distill_time_at_most_teacher"] = None if fractions is None else all(f <= 1 for f in fractions.values())
    out["all_met"] = all(v["met"] for v in out.values() if isinstance(v, dict)) and \
        out["students_beat_training_free"] and out["distill_time_at_most_teacher"] is not False
    return out


def write_grid(teacher: Path, students: dict, path: Path) -> None:
    """Rows: teacher@50, progressive @1/2/4, consistency @1/2/4; the same seeds in every row."""
    from unnoise.io.image import save_grid

    rows = [sample(teacher, GRID_N, seed=GRID_SEED, nfe=50)]
    for method in ("progressive", "consistency"):
        rows += [sample(students[method][nfe], GRID_N, seed=GRID_SEED, nfe=nfe) for nfe in STUDENT_NFES]
    save_grid(torch.cat(rows).clamp(-1, 1), path, nrow=GRID_N, upscale=max(1, 32 // rows[0].shape[-1]))


def run_dataset(dataset: str, settings: dict, work: Path, teacher: Path | None, figures: Path | None) -> dict:
    t0 = time.perf_counter()
    given = teacher is not None
    teacher = teacher or work / "teacher"
    teacher_train = teacher_seconds(teacher) if given else train_teacher(teacher, settings)
    n = settings["n"]
    teacher_50 = sample(teacher, n, nfe=50)
    score = Scorer(dataset, teacher_50)
    result = {"settings": settings, "teacher_run": str(teacher),
              "teacher": {"train_seconds": teacher_train and round(teacher_train, 1),
                          "nfe10": score(sample(teacher, n, nfe=10)), "nfe50": score(teacher_50),
                          "nfe50_other_seeds": score(sample(teacher, n, seed=30_000, nfe=50))}}
    runs = {method: distill(teacher, work / method, method, settings) for method in ("progressive", "consistency")}
    result["distill_seconds"] = {m: r["seconds"] for m, r in runs.items()}
    if teacher_train:
        result["distill_fraction_of_teacher"] = {m: round(r["seconds"] / teacher_train, 3) for m, r in runs.items()}
    students = {"progressive": {r["steps"]: Path(r["run"]) for r in runs["progressive"]["rounds"]},
                "consistency": {nfe: work / "consistency" for nfe in STUDENT_NFES}}
    for nfe in STUDENT_NFES:
        result[f"nfe{nfe}"] = {"progressive": score(sample(students["progressive"][nfe], n, nfe=nfe)),
                               "consistency": score(sample(students["consistency"][nfe], n, nfe=nfe)),
                               "best_training_free": best_free(teacher, n, nfe, score)}
    result["targets"] = targets(result)
    if figures is not None:
        write_grid(teacher, students, figures / f"distillation_{dataset}.png")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{dataset}: {json.dumps(result['targets'])}", file=sys.stderr)
    return result


def parse_teachers(items: list[str]) -> dict:
    teachers = {}
    for item in items:
        dataset, sep, run = item.partition("=")
        if not sep or dataset not in FULL:
            raise SystemExit(f"--teacher {item!r}: expected DATASET=RUN with DATASET one of {', '.join(FULL)}")
        if not (Path(run) / "config.json").is_file():
            raise SystemExit(f"--teacher {item!r}: {run} is not a run folder (no config.json)")
        teachers[dataset] = Path(run)
    return teachers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quick", action="store_true", help="small teachers, short rounds, few samples")
    parser.add_argument("--datasets", nargs="+", default=list(FULL), choices=list(FULL))
    parser.add_argument("--teacher", action="append", default=[], metavar="DATASET=RUN",
                        help="an existing run as the teacher of DATASET instead of training one")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--figures", type=Path, default=None,
                        help="folder for the grids (default: --work; docs/ for the README's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    teachers = parse_teachers(args.teacher)
    settings = QUICK if args.quick else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="unnoise-distill-"))
    figures = args.figures or work
    result = {"quick": args.quick, "threads": torch.get_num_threads()}
    for dataset in args.datasets:
        result[dataset] = run_dataset(dataset, settings[dataset], work / dataset, teachers.get(dataset), figures)
    result["work"] = str(work)
    print(json.dumps(result))
    if not args.json:
        print(f"runs in {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
