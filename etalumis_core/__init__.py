"""etalumis: take control of a stochastic simulator and run it backwards.

A simulator calls :func:`sample`, :func:`observe`, :func:`tag` and :func:`factor`; an engine
controls every one of those calls and returns a :class:`Posterior` over whole execution traces::

    import etalumis_core as et

    def model():
        mu = et.sample(et.Normal(1.0, 5 ** 0.5), name="mu")
        et.observe(et.Normal(mu, 2 ** 0.5), name="y")

    posterior = et.infer(model, observe={"y": 8.0}, engine="rmh", num_traces=5000, seed=0)
    posterior.marginal("mu").mean
"""

from .api import infer, observations_of, simulate
from .calibration import calibrate
from .controller import Controller
from .distributions import (Bernoulli, Beta, Binomial, Categorical, Distribution, Exponential,
                            Gamma, LogNormal, Mixture, Normal, Poisson, TruncatedNormal, Uniform,
                            Weibull)
from .engines import (Engine, ImportanceSampling, LightweightMH, RandomWalkMH,
                      SequentialMonteCarlo)
from .engines.ic import InferenceCompilation
from .engines.ic_smc import NetworkGuidedSMC
from .errors import (ConfigError, EtalumisError, NonFiniteLogProbError, ObservationError,
                     PluginError, ProtocolError, SimulatorError, TraceTooLongError)
from .executors import Executor, ProcessPoolExecutor, SerialExecutor
from .hooks import hookimpl
from .plugins import Plugins, load_plugins, make_plugin_manager
from .posterior import Marginal, Posterior, PosteriorBuilder
from .runtime import factor, observe, sample, seed_forward, tag
from .simulator import PythonSimulator, Simulator, SimulatorSpec, run_trace
from .trace import Trace, Variable

__version__ = "0.1.0"


__all__ = [
    "infer", "simulate", "observations_of", "calibrate",
    "sample", "observe", "tag", "factor", "seed_forward",
    "Simulator", "PythonSimulator", "PPXSimulator", "serve", "SimulatorSpec", "run_trace", "Controller",
    "Trace", "Variable", "Posterior", "PosteriorBuilder", "Marginal",
    "Engine", "ImportanceSampling", "LightweightMH", "RandomWalkMH", "SequentialMonteCarlo",
    "InferenceCompilation", "NetworkGuidedSMC",
    "generate_dataset", "TraceDataset", "ProposalNetwork", "Trainer",
    "Executor", "SerialExecutor", "ProcessPoolExecutor",
    "hookimpl", "make_plugin_manager", "load_plugins", "Plugins",
    "Distribution", "Normal", "Uniform", "Categorical", "Poisson", "Bernoulli", "Beta",
    "Exponential", "Gamma", "LogNormal", "Binomial", "Weibull", "TruncatedNormal", "Mixture",
    "EtalumisError", "ObservationError", "NonFiniteLogProbError", "SimulatorError",
    "TraceTooLongError", "ProtocolError", "PluginError", "ConfigError",
]

# Loaded on first use: h5py and torch cost noticeable import time.
_LAZY = {"generate_dataset": ("etalumis_core.data.dataset", "generate_dataset"),
         "TraceDataset": ("etalumis_core.data.dataset", "TraceDataset"),
         "ProposalNetwork": ("etalumis_core.nn.network", "ProposalNetwork"),
         "Trainer": ("etalumis_core.nn.train", "Trainer"),
         # The PPX layer needs ZeroMQ: only PPX runs pay for it.
         "PPXSimulator": ("etalumis_core.ppx", "PPXSimulator"),
         "serve": ("etalumis_core.ppx", "serve")}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'etalumis_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value
