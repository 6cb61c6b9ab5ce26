"""The conformance suite passes for the built-in models and catches a broken adapter."""

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core import models
from etalumis_core.conformance import SimulatorConformance


class TestGaussianConforms(SimulatorConformance):
    def make_simulator(self):
        return models.make_gaussian()


class TestPoissonMixtureConforms(SimulatorConformance):
    def make_simulator(self):
        return models.make_poisson_mixture()


_hidden = np.random.default_rng(0)


def leaky_model():
    x = et.sample(et.Normal(0.0, 1.0), name="x")
    et.observe(et.Normal(x + _hidden.normal(), 1.0), name="y")  # randomness outside etalumis


def test_suite_catches_hidden_randomness_and_wrong_shapes():
    class Leaky(SimulatorConformance):
        def make_simulator(self):
            return et.PythonSimulator(leaky_model, observations={"y": (3,)})

    suite = Leaky()
    with pytest.raises(AssertionError):
        suite.test_seeded_runs_are_reproducible()
    with pytest.raises(AssertionError, match="shape"):
        suite.test_declared_observations_have_their_shapes()
