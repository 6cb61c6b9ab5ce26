"""etalumis hook implementations: the ``sherpa`` simulator and its Hydra config."""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl

from .simulator import SherpaSimulator


def make_simulator(**params: Any) -> SherpaSimulator:
    """Build a :class:`SherpaSimulator` from plain keyword arguments (the ``params`` of
    ``conf/simulator/sherpa.yaml``). Module-level, so that a
    :class:`~etalumis_core.SimulatorSpec` rebuilds it in every executor worker: each worker
    launches and holds its own Sherpa process."""
    return SherpaSimulator(**params)


@hookimpl
def etalumis_register_simulators(register: Any) -> None:
    register("sherpa", make_simulator,
             description="the Sherpa event generator (tau decay, 35x35x20 calorimeter) over PPX")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_sherpa_adapter.conf")
