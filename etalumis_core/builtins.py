"""The core's own plugin: registered through the same hooks as every other plugin, first."""

from __future__ import annotations

from . import models
from .engines.ic import InferenceCompilation
from .engines.ic_smc import NetworkGuidedSMC
from .engines.importance import ImportanceSampling
from .errors import PluginError
from .engines.mh import LightweightMH, RandomWalkMH
from .engines.smc import SequentialMonteCarlo
from .executors import ProcessPoolExecutor, SerialExecutor
from .hooks import hookimpl


@hookimpl
def etalumis_register_simulators(register):
    register("gaussian", models.make_gaussian,
             description="Gaussian with unknown mean (exact posterior known)")
    register("poisson_mixture", models.make_poisson_mixture,
             description="number of latent variables depends on an earlier choice")
    register("weather", models.make_discrete_weather,
             description="small discrete model (exact enumeration)")
    register("ppx", make_ppx_simulator,
             description="any PPX simulator: connect to an address or launch a command")


def make_ppx_simulator(**options):
    """A PPX simulator in another process (imported lazily: only PPX runs need ZeroMQ)."""
    from .ppx import PPXSimulator

    return PPXSimulator(**options)


@hookimpl
def etalumis_register_engines(register):
    register("importance", ImportanceSampling, description="importance sampling from the prior")
    register("lmh", LightweightMH, description="lightweight single-site Metropolis-Hastings")
    register("rmh", RandomWalkMH, description="random-walk single-site Metropolis-Hastings")
    register("smc", SequentialMonteCarlo,
             description="sequential Monte Carlo: likelihood tempering with block MH moves")
    register("ic", InferenceCompilation,
             description="inference compilation: importance sampling with a trained network")
    register("ic_smc", NetworkGuidedSMC,
             description="sequential Monte Carlo tempered from a trained network's proposal")


def _feedforward(**options):
    # torch is imported only when a network is built.
    from .nn.embeddings import feedforward

    return feedforward(**options)


def _single_trainer(**options):
    from .nn.train import Trainer

    return Trainer(**options)


@hookimpl
def etalumis_register_proposals(register):
    register("feedforward", _feedforward,
             description="observations flattened into a multilayer perceptron (the default)")


@hookimpl
def etalumis_register_trainers(register):
    register("single", _single_trainer, description="single-process training (online or dataset)")


@hookimpl
def etalumis_register_executors(register):
    register("serial", SerialExecutor, description="everything in this process")
    register("process", ProcessPoolExecutor, description="a local pool of worker processes")
    register("dask", make_dask_executor,
             description="a Dask cluster: local, a scheduler address, or SLURM via dask-jobqueue")


def make_dask_executor(**options):
    """The Dask executor; dask is imported only when one is made (an optional dependency)."""
    try:
        from .dask_executor import DaskExecutor
    except ImportError as error:
        if (error.name or "").split(".")[0] not in ("dask", "distributed", "cloudpickle"):
            raise
        raise PluginError("executor 'dask' needs dask.distributed, which is not installed: "
                          "pip install 'etalumis-core[dask]'") from error
    return DaskExecutor(**options)
