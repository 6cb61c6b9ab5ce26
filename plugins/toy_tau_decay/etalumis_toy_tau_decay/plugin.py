"""etalumis hook implementations: the ``toy_tau_decay`` simulator and its Hydra config."""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl

from .model import TauDecaySimulator


@hookimpl
def etalumis_register_simulators(register: Any) -> None:
    # The class itself, so that its defaults are visible to whoever records a run's options.
    register("toy_tau_decay", TauDecaySimulator,
             description="tau- decay (38 channels) with a 35x35x20 voxel calorimeter")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_toy_tau_decay.conf")
