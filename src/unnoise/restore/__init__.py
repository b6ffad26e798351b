"""Restoration with an unconditional prior: degradation operators and posterior sampling transforms."""
from .operators import AddNoise, Compose, GaussianBlur, Grayscale, LinearOperator, Mask, Downsample
from .posterior import posterior_summary, tweedie_conditioned
from .projection import consistent, ddnm

__all__ = ["AddNoise", "Compose", "Downsample", "GaussianBlur", "Grayscale", "LinearOperator", "Mask",
           "consistent", "ddnm", "posterior_summary",
           "tweedie_conditioned"]
