"""`unnoise eval RUN` for a molecule run: sample n molecules through the pipeline and report the field's
metrics (molecules/: atom and molecule stability from the reference's bond rules, RDKit validity,
uniqueness among valid, novelty against the run's training molecules), with the protocol; the samples are
written beside eval.json as an SD file and a PNG of RDKit depictions.

Novelty compares SMILES made the same way on both sides: the training molecules' geometries go through the
same bonds-from-distances and RDKit steps as the samples (as the reference does). Those training SMILES are
computed once and cached in RUN/train_smiles.json, keyed by the run's data section.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import UnnoiseError
from ..io.molecules import molecules_of
from ..molecules.features import split_molecules
from ..molecules.validity import evaluate_molecules, valid_smiles
from ..pipeline import Pipeline, SampleRequest
from .quality import generate

TRAIN_SMILES = "train_smiles.json"


def training_smiles(run_dir: Path, config) -> list[str]:
    """The distinct valid SMILES of the run's training molecules (computed once, cached in the run)."""
    key = {"name": config.data.name, "options": {**config.data.options, "split": "train"}}
    cache = Path(run_dir) / TRAIN_SMILES
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = {}
        if isinstance(saved, dict) and saved.get("data") == key and isinstance(saved.get("smiles"), list):
            return saved["smiles"]
    dataset = load_dataset(key["name"], **key["options"])
    smiles = sorted({s for s in valid_smiles(split_molecules(dataset.x, dataset.atom_mask, dataset.atom_features))
                     if s is not None})
    partial = cache.with_name(f".{cache.name}.partial")
    partial.write_text(json.dumps({"data": key, "smiles": smiles}), encoding="utf-8")
    partial.replace(cache)
    return smiles


def evaluate_molecule_run(run_dir, *, n: int = 1000, seed: int = 0, sampler: str | None = None,
                          nfe: int | None = None, steps: int | None = None, weights: str = "ema", device="auto",
                          atoms: int | None = None, outputs: bool = True) -> dict:
    """Metrics and protocol of n molecules sampled from a molecule run (seeds seed .. seed + n - 1); with
    `outputs` the samples go to RUN/eval_samples.sdf and RUN/eval_samples.png."""
    pipe = Pipeline.load(run_dir, device=device, weights=weights)
    config = pipe.config
    if config.modality != "molecule":
        raise UnnoiseError(f"{run_dir} is not a molecule run (its data: {config.modality or 'not molecules'})")
    request = SampleRequest(sampler=sampler, nfe=nfe, steps=steps, atoms=atoms)
    plan = pipe.plan(request)
    with torch.no_grad():
        x = generate(pipe, dataclasses.replace(request, seed=seed), n)
    molecules = molecules_of(x, config.spec)
    reference = training_smiles(run_dir, config)
    metrics = evaluate_molecules(molecules, reference)
    if outputs:
        from ..io import write_samples

        names = [f"sample {i} (seed {seed + i})" for i in range(n)]
        write_samples(x, config.spec, Path(run_dir) / "eval_samples.sdf", names=names)
        write_samples(x, config.spec, Path(run_dir) / "eval_samples.png")
    protocol = {"run_dir": str(run_dir), "weights": weights, "n": n, "seeds": [seed, seed + n - 1],
                "sampler": plan.name, "nfe": plan.nfe, "steps": plan.steps,
                "atoms": atoms if atoms is not None else "drawn from the training histogram p(N)",
                "bonds": "EDM for molecules' bond-length tables + margins 10/5/3 pm (molecules/bonds.py)",
                "validity": "RDKit SanitizeMol, largest fragment", "uniqueness": "distinct SMILES / valid",
                "novelty": {"against": f"{len(reference)} distinct valid training SMILES",
                            "data": {"name": config.data.name, "options": {**config.data.options, "split": "train"}}}}
    return {**metrics, "protocol": protocol}


def evaluate_molecule_nll(run_dir, *, n: int = 100, seed: int = 0, split: str | None = None, batch: int = 32,
                          draws: int = 2, rtol: float = 1e-5, atol: float = 1e-5, weights: str = "ema",
                          device="auto") -> dict:
    """-log p(x) in nats of n held-out molecules (default split: test) by the probability-flow ODE in the
    zero-CoM subspace (molecules/likelihood.py) plus -log p(N): a density of the continuous representation
    (positions in Å, scaled one-hot types and charges), not EDM's likelihood with discrete feature terms."""
    from ..molecules.likelihood import molecule_log_likelihood
    from ..run.molecules import atom_counts_of

    pipe = Pipeline.load(run_dir, device=device, weights=weights)
    config = pipe.config
    options = {**{k: v for k, v in config.data.options.items() if k != "half"}, "split": split or "test"}
    data = load_dataset(config.data.name, **options)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    x, mask = data.x[order].to(pipe.device), data.atom_mask[order].to(pipe.device)
    generator, given_n, nfe = torch.Generator().manual_seed(seed), [], 0
    for start in range(0, len(x), batch):
        rows = slice(start, start + batch)
        cond = pipe.conditions.null(len(x[rows]), pipe.device) if pipe.conditions.guidable else None
        result = molecule_log_likelihood(pipe.denoiser, x[rows], mask[rows], pipe.process, draws=draws, rtol=rtol,
                                         atol=atol, generator=generator, cond=cond)
        given_n.append(-result["log_p"].mean(0).cpu())
        nfe += result["nfe"]
    nll_given_n = torch.cat(given_n)
    log_p_n = atom_counts_of(config).log_probability(mask.sum(1).cpu())
    nll = nll_given_n - log_p_n
    stderr = float(nll.std() / len(nll) ** 0.5) if len(nll) > 1 else None
    return {"nll_nats": float(nll.mean()), "nll_stderr": stderr, "nll_given_n_nats": float(nll_given_n.mean()),
            "log_p_n": float(log_p_n.mean()), "n": len(nll), "seed": seed, "nfe": nfe,
            "protocol": {"run_dir": str(run_dir), "weights": weights, "data": {"name": config.data.name,
                         "options": options}, "method": "probability-flow ODE in the zero-CoM subspace (dopri5)",
                         "divergence": f"Hutchinson, {draws} projected Rademacher probes", "rtol": rtol, "atol": atol,
                         "sigma_start": pipe.process.sigma_min, "sigma_max": pipe.process.sigma_max}}
