"""The adapter conformance suite, run against the cure simulator."""

from etalumis_core.conformance import SimulatorConformance
from etalumis_composite_cure.plugin import make_simulator


class TestCureConforms(SimulatorConformance):
    def make_simulator(self):
        return make_simulator()
