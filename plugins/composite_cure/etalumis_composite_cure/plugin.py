"""Entry point of the composite_cure plugin: registers the simulator and its config path."""
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


@hookimpl
def etalumis_config_paths(register) -> None:
    register("pkg://etalumis_composite_cure.conf")
