"""The adapter conformance suite, run against the tau-decay simulator."""

from etalumis_core.conformance import SimulatorConformance
from etalumis_toy_tau_decay import TauDecaySimulator


class TestTauDecayConforms(SimulatorConformance):
    def make_simulator(self):
        return TauDecaySimulator()
