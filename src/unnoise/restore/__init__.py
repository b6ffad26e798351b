"""Restoration with an unconditional prior: degradation operators and posterior sampling transforms."""
from .dps import PosteriorGuided, dps, dps_sample
from .inpaint import repaint, repaint_schedule
from .operators import LUMA, MEAN, AddNoise, Compose, Downsample, GaussianBlur, Grayscale, LinearOperator, Mask
from .posterior import posterior_summary, tweedie_conditioned
from .projection import METHODS, consistent, ddnm, restore

__all__ = ["AddNoise", "Compose", "Downsample", "GaussianBlur", "Grayscale", "LUMA", "LinearOperator", "MEAN",
           "METHODS", "Mask", "PosteriorGuided", "consistent", "ddnm", "dps", "dps_sample", "posterior_summary", "repaint",
           "repaint_schedule", "restore", "tweedie_conditioned"]
