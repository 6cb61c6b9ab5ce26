"""The entry point: registers ``pythia8_tau`` and the plugin's config directory."""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl


def make_simulator(**params: Any) -> Any:
    """Build a :class:`~.simulator.Pythia8TauSimulator` (each executor worker launches and holds
    its own front-end process)."""
    from .simulator import Pythia8TauSimulator

    return Pythia8TauSimulator(**params)


@hookimpl
def etalumis_register_simulators(register: Any) -> None:
    register("pythia8_tau", make_simulator,
             description="Pythia 8 tau decays over PPX (35x35x20 calorimeter), every random "
                         "number under control")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_pythia8_adapter.conf")
