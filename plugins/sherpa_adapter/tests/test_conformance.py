"""The adapter conformance suite, run against the Sherpa adapter driving the Sherpa-like C++
PPX process (a real launched process: clean shutdown means no process left behind)."""

import pytest

from etalumis_core.conformance import SimulatorConformance
from etalumis_sherpa_adapter import SherpaSimulator


class TestSherpaConforms(SimulatorConformance):
    @pytest.fixture(autouse=True)
    def _binary(self, sherpa_binary, tmp_path):
        self.binary = sherpa_binary
        self.dictionary = tmp_path / "addresses.jsonl"

    def make_simulator(self):
        return SherpaSimulator(command=[str(self.binary), "{address}"], timeout=10.0,
                               startup_timeout=10.0, address_dictionary=str(self.dictionary))
