"""Molecule runs: QM9-style point clouds with atom types (modality molecule) denoised by the EGNN of
nn/egnn.py, in the zero-centre-of-mass subspace (EDM for molecules, Hoogeboom et al. 2022).

The resolved config records what loading needs in `config.molecule`: the atom types in one-hot order, the
feature scales, whether a charge column follows, and the training histogram of atom counts p(N). The
network's `num_features` is fixed by the data. Training uses objectives/molecule.py (noise in each
molecule's subspace, the atom mask as condition). Sampling (Pipeline.sample through `molecule_generator`)
draws each molecule's atom count from p(N) with its own seed (or takes `--atoms`), then runs the sampler
from ZeroCoMNoise with that mask; padding rows of the samples are exactly zero.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import numpy as np
import torch

from ..errors import UnnoiseError
from ..molecules.counts import AtomCountDistribution
from ..molecules.features import ATOM_MASK, AtomFeatures, mask_from_counts
from ..molecules.zero_com import ZeroCoMNoise, project

MOLECULE_NETWORKS = ("egnn", "atom_transformer")  # E(3)-equivariant; the non-equivariant baseline
COUNT_STREAM = 7_019  # the atom count of seed s comes from numpy's generator seeded [s, COUNT_STREAM],
# a stream apart from the noise's torch generator seeded s


def is_molecule_config(config) -> bool:
    """Whether a resolved run config describes molecules."""
    return config.modality == "molecule"


def check_molecule_config(config, modality: str) -> None:
    """One-line errors for a molecule network on other data and for what a molecule run cannot take."""
    m = config.model
    if m.network in MOLECULE_NETWORKS and modality != "molecule":
        raise UnnoiseError(f"model.network={m.network} is for molecule data (e.g. data.name=qm9); dataset "
                           f"{config.data.name!r} holds {modality or 'other'} data")
    if modality != "molecule":
        return
    if m.network not in MOLECULE_NETWORKS:
        raise UnnoiseError(f"model.network={m.network}: molecule data ({config.data.name}) needs a molecule "
                           f"network: {', '.join(MOLECULE_NETWORKS)} (e.g. --preset qm9)")
    other = [name for name in m.conditions if name != "property"]
    if other:
        raise UnnoiseError(f"model.conditions: a molecule run takes only property, got {other[0]}")
    if "property" in m.conditions and m.network != "egnn":
        raise UnnoiseError(f"model.conditions: property needs model.network=egnn, got {m.network}")
    if m.learned_variance:
        raise UnnoiseError("model.learned_variance: not for molecule runs")
    if m.codec:
        raise UnnoiseError("model.codec: molecule runs diffuse atoms directly; leave model.codec empty")
    if config.sample.sampler == "auto":
        raise UnnoiseError("sample.sampler=auto: calibration draws noise outside the zero-CoM subspace; give a "
                           "sampler (e.g. heun or euler_ancestral)")


def resolve_molecule_config(config, dataset):
    """The config with the EGNN's num_features fixed by the data and `config.molecule` recording the atom
    features and the atom-count histogram of `dataset` (a molecules_dataset)."""
    check_molecule_config(config, dataset.spec.modality)
    features, counts = dataset.atom_features, dataset.atom_counts
    options = dict(config.model.network_options)
    given = options.get("num_features", features.num_features)
    if given != features.num_features:
        raise UnnoiseError(f"model.network_options.num_features={given!r}: fixed to {features.num_features} by "
                           f"the data ({len(features.types)} atom types{' + charge' if features.charges else ''})")
    options["num_features"] = features.num_features
    molecule = {"types": list(features.types), "type_scale": features.type_scale, "charges": features.charges,
                "charge_scale": features.charge_scale, "atom_counts": counts.to_list()}
    saved = config.molecule.get("types") if config.molecule else None
    if saved is not None and list(saved) != molecule["types"]:
        raise UnnoiseError(f"data {config.data.name!r}: atom types {molecule['types']} differ from the run's {saved}")
    properties = property_fields(config, dataset)
    if properties:
        molecule["properties"] = properties
        options["properties"] = len(properties["names"])
    model = dataclasses.replace(config.model, network_options=options)
    return dataclasses.replace(config, model=model, molecule=molecule)


def property_fields(config, dataset) -> dict:
    """The conditioning properties' names and training statistics (kept from the saved run on resume), or
    {} for an unconditional run; one-line errors when the condition and data.options.properties disagree."""
    from ..conditions.properties import property_statistics

    names = list(getattr(dataset, "condition_properties", []) or [])
    if "property" not in config.model.conditions:
        if names:
            raise UnnoiseError(f"data.options.properties={','.join(names)} needs model.conditions: [property]")
        return {}
    if not names:
        raise UnnoiseError("model.conditions: property needs data.options.properties (e.g. alpha or alpha,gap)")
    saved = (config.molecule or {}).get("properties")
    if saved:
        if list(saved["names"]) != names:
            raise UnnoiseError(f"data.options.properties={','.join(names)} differs from the run's "
                               f"{','.join(saved['names'])}")
        return dict(saved)
    return property_statistics(dataset.properties, names)


def atom_features_of(config) -> AtomFeatures:
    """The AtomFeatures a resolved molecule config records."""
    m = config.molecule
    if not m or "types" not in m:
        raise UnnoiseError("a molecule run's config.json needs its resolved 'molecule' field (atom types, counts)")
    return AtomFeatures(tuple(m["types"]), float(m.get("type_scale", 0.25)), bool(m.get("charges", True)),
                        float(m.get("charge_scale", 0.1)))


def atom_counts_of(config) -> AtomCountDistribution:
    """p(N), the training histogram of atom counts a resolved molecule config records."""
    counts = (config.molecule or {}).get("atom_counts")
    if not counts:
        raise UnnoiseError("a molecule run's config.json has no molecule.atom_counts (the training histogram)")
    return AtomCountDistribution(counts)


def molecule_objective(config, denoiser, conditions, train):
    """The training objective of a molecule run (objectives/molecule.py)."""
    from ..objectives.molecule import MoleculeObjective

    return MoleculeObjective(denoiser, conditions, train, atom_features_of(config))


def atom_counts_for(seeds: Sequence[int], distribution: AtomCountDistribution, atoms: int | None = None):
    """Atom counts (B,) int64: `atoms` for every molecule, or one draw from p(N) per seed (its own stream,
    so a molecule's size depends on its seed only, never on the batch)."""
    if atoms is not None:
        if isinstance(atoms, bool) or not isinstance(atoms, int) or not 1 <= atoms <= distribution.max_atoms:
            raise UnnoiseError(f"--atoms must be an integer in [1, {distribution.max_atoms}], got {atoms!r}")
        return torch.full((len(seeds),), atoms, dtype=torch.int64)
    p = distribution.probabilities.numpy()
    draws = [np.random.default_rng([int(s), COUNT_STREAM]).choice(len(p), p=p) for s in seeds]
    return torch.tensor(draws, dtype=torch.int64)


def molecule_generator(config, request):
    """A stand-in for sample.generate that draws molecules: per seed an atom count (request.atoms or p(N)),
    the start and every fresh noise in the zero-CoM subspace of that mask (ZeroCoMNoise), the mask passed
    to the denoiser as cond["atom_mask"], padding rows zero in the result."""
    if request.sampler == "auto":
        raise UnnoiseError("--sampler auto: calibration draws noise outside the zero-CoM subspace; name a sampler")
    distribution = atom_counts_of(config)
    atoms = getattr(request, "atoms", None)

    def generate_molecules(denoiser, shape, sigmas, sampler, *, seeds, cond=None, callback=None, device=None,
                           dtype=torch.float32):
        from ..sample import get_sampler

        fn = get_sampler(sampler) if isinstance(sampler, str) else sampler
        mask = mask_from_counts(atom_counts_for(list(seeds), distribution, atoms), int(shape[0]))  # (B, N)
        noise = ZeroCoMNoise(seeds, mask, device)
        x = noise.initial(shape, float(sigmas[0]), dtype=dtype)
        mask = mask.to(x.device)
        denoiser = with_masked_null(denoiser, mask)
        x = fn(denoiser, x, sigmas, cond={**(cond or {}), ATOM_MASK: mask}, noise=noise, callback=callback)
        return project(x, mask)

    return generate_molecules



def with_masked_null(denoiser, mask: torch.Tensor):
    """A guided denoiser (guide.Guided, classifier-free guidance) whose null condition also carries the
    atom mask of this batch, so the unconditional branch sees the same atoms; other denoisers unchanged."""
    from ..guide import Guided, null_like

    if not isinstance(denoiser, Guided):
        return denoiser
    null = denoiser.null
    masked = copy.copy(denoiser)
    masked.null = lambda n: {**null_like(null, n, mask.device), ATOM_MASK: mask}
    return masked
