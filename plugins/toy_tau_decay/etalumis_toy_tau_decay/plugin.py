"""etalumis hook implementations: the ``toy_tau_decay`` simulator and its Hydra config."""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl

from .model import TauDecaySimulator


def make_simulator(**config: Any) -> TauDecaySimulator:
    """Build the tau-decay simulator from keyword arguments (see :class:`TauDecaySimulator`)."""
    return TauDecaySimulator(**config)


@hookimpl
def etalumis_register_simulators(register: Any) -> None:
    register("toy_tau_decay", make_simulator,
             description="tau- decay (38 channels) with a 35x35x20 voxel calorimeter")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_toy_tau_decay.conf")
