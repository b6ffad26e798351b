"""Training objectives: what a step optimises (see base.py); the trainer runs any of them."""
from .base import Objective, trainable
from .denoising import DenoisingObjective

__all__ = ["Objective", "DenoisingObjective", "trainable"]
