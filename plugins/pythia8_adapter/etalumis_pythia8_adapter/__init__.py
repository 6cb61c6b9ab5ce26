"""Pythia 8 tau decays under etalumis's control over PPX (``simulator=pythia8_tau``)."""

from .plugin import make_simulator
from .simulator import CALORIMETER_SHAPE, Pythia8TauSimulator, front_end_path

__all__ = ["Pythia8TauSimulator", "make_simulator", "front_end_path", "CALORIMETER_SHAPE"]
