"""Inference engines: a controller policy each, over any simulator and any executor."""

from .base import Engine
from .importance import ImportanceSampling
from .mh import LightweightMH, RandomWalkMH
from .smc import SequentialMonteCarlo

__all__ = ["Engine", "ImportanceSampling", "LightweightMH", "RandomWalkMH",
           "SequentialMonteCarlo"]
