"""Molecule runs in the studio: molecule i sampled alone from seed + i (its atom count drawn from the run's
histogram unless given), written as an SDF file and drawn as a PNG (2-D depiction and 3-D view) that carries
the job's settings like every studio picture."""
from __future__ import annotations

import dataclasses

from .builtin import MAX_SEED, sampler_fields
from .fields import Field
from .kinds import Form, Kind, register_kind
from .media import picture_tensor


def molecule_fields(config) -> list[Field]:
    fields = [Field("atoms", "int", "Atoms per molecule", None, 1, 64, optional=True,
                    help="empty: drawn from the training set's atom counts")]
    if "property" in config.model.conditions:
        fields.append(Field("property", "text", "Target properties", "", help="e.g. alpha=80; empty: unconditional"))
    return [*fields, *sampler_fields(config), Field("seed", "int", "Seed", 0, 0, MAX_SEED, help="output i uses seed + i"),
            Field("n", "int", "Number of molecules", 4, 1, 32)]


def _request(params: dict, seed: int):
    from ..pipeline import SampleRequest

    return SampleRequest(n=1, seed=seed, sampler=params.get("sampler"), nfe=params.get("nfe"),
                         atoms=params.get("atoms"), property=params.get("property") or None, batch_size=1)


def check_molecules(config, params, images) -> None:
    """Submission-time check of the property text (names and numbers) through the run's condition."""
    if params.get("property"):
        from ..conditions import conditions_for

        conditions_for(config).get("property").from_request(params["property"], 1)


def generate_molecules(ctx) -> None:
    from ..io import write_samples

    params = ctx.params
    ctx.start(params["n"] * ctx.pipe.plan(_request(params, params["seed"])).steps)
    for i in range(params["n"]):
        seed = params["seed"] + i
        x = ctx.pipe.sample(dataclasses.replace(_request(params, seed), callback=ctx.callback))
        sdf, drawing = ctx.path(f"{i:03d}.sdf"), ctx.path(f"{i:03d}-drawing.png")
        write_samples(x, ctx.config.spec, sdf)
        write_samples(x, ctx.config.spec, drawing)
        picture = picture_tensor(drawing)
        drawing.unlink()
        ctx.write_png(f"{i:03d}.png", picture, seed=seed, download=sdf.name)


register_kind(Kind("molecule", lambda config: config.spec.modality == "molecule",
                   (Form("generate", "Generate", molecule_fields, generate_molecules, check=check_molecules),),
                   "molecules: SDF files and drawings"))
