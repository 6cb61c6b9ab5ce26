"""Pythia 8 tau decays under etalumis's control (``simulator=pythia8_tau``), over PPX or in
the engine's process (``simulator.params.transport=inprocess``)."""

from .inprocess import Pythia8TauInProcess
from .plugin import make_simulator
from .simulator import CALORIMETER_SHAPE, Pythia8TauSimulator, front_end_path

__all__ = ["Pythia8TauSimulator", "Pythia8TauInProcess", "make_simulator", "front_end_path",
           "CALORIMETER_SHAPE"]
