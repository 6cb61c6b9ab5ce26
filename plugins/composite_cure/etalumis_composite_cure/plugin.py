"""Entry point of the composite_cure plugin: registers the simulator, the engine documented for
its random cure cycle, and its config path."""
from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl


def make_simulator(**params: Any):
    """Build a :class:`~etalumis_composite_cure.model.CureSimulator` from config parameters."""
    from .model import make_simulator as _make

    return _make(**params)


@hookimpl
def etalumis_register_simulators(register) -> None:
    register("composite_cure", make_simulator,
             description="AS4/8552 laminate cure on an Invar tool: infer the internal temperature, "
                         "degree of cure and process parameters from surface thermocouples")


def make_engine(**params: Any):
    """The engine documented for the random cure cycle (README, "Inference"): SMC with the
    settings :data:`~etalumis_composite_cure.model.SMC_SETTINGS` (any of them overridable)."""
    from etalumis_core.engines import SequentialMonteCarlo

    from .model import SMC_SETTINGS

    return SequentialMonteCarlo(**{**SMC_SETTINGS, **params})


@hookimpl
def etalumis_register_engines(register) -> None:
    register("composite_cure_smc", make_engine,
             description="SMC with the settings calibrated on composite_cure's random cure cycle "
                         "(use with num_traces=64)")


@hookimpl
def etalumis_config_paths(register) -> None:
    register("pkg://etalumis_composite_cure.conf")
