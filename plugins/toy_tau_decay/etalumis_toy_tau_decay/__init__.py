"""A tau-lepton decay simulator with a 3-D calorimeter, controllable by etalumis.

A tau- with uniformly distributed momentum decays through one of the 38 channels of the Sherpa
HADRONS++ table; the decay products shower in a 35 x 35 x 20 voxel calorimeter, which is the
observation. See :class:`TauDecaySimulator`.
"""

from .physics import CHANNEL_ASCII_NAMES, CHANNEL_NAMES, CHANNEL_PROBS, CHANNELS, channel_index

__all__ = ["TauDecaySimulator", "make_simulator", "CHANNELS", "CHANNEL_NAMES",
           "CHANNEL_ASCII_NAMES", "CHANNEL_PROBS", "channel_index"]


def __getattr__(name: str):
    # The simulator needs etalumis_core; the physics tables do not, so import it lazily.
    if name == "TauDecaySimulator":
        from .model import TauDecaySimulator
        return TauDecaySimulator
    if name == "make_simulator":
        from .plugin import make_simulator
        return make_simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
