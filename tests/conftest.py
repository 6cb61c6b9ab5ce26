import os

import pytest

# Plots in tests must not need a display.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def gaussian_obs():
    return {"obs0": 8.0, "obs1": 9.0}
