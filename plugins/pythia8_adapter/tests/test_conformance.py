"""The adapter conformance suite, run against the real Pythia 8: over real sockets, and in
process."""

import pytest

from etalumis_core.conformance import SimulatorConformance
from etalumis_pythia8_adapter import Pythia8TauInProcess, Pythia8TauSimulator


class TestPythia8Conforms(SimulatorConformance):
    @pytest.fixture(autouse=True)
    def _front_end(self, front_end):
        self.front_end = front_end

    def make_simulator(self):
        return Pythia8TauSimulator(self.front_end, timeout=30.0, startup_timeout=30.0)


class TestPythia8InProcessConforms(SimulatorConformance):
    @pytest.fixture(autouse=True)
    def _front_end(self, front_end):
        self.front_end = front_end

    def make_simulator(self):
        return Pythia8TauInProcess(self.front_end)
