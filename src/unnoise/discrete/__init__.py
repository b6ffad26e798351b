"""Categorical (discrete) diffusion: absorbing and uniform processes, their ELBO, samplers, exact references."""
from .loss import diffusion_loss, elbo_terms, estimate_elbo, sample_times
from .process import AbsorbingProcess, UniformProcess, make_process
from .sample import FREE, infill_template, prefix_template, sample_tokens

__all__ = ["AbsorbingProcess", "UniformProcess", "make_process", "diffusion_loss", "elbo_terms", "estimate_elbo",
           "sample_times", "sample_tokens", "prefix_template", "infill_template", "FREE"]
