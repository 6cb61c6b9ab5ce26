"""The entry point: registers ``pythia8_tau`` and the plugin's config directory."""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl

#: Options of the PPX link only, meaningless for Pythia in the engine's process.
PPX_ONLY = ("timeout", "startup_timeout", "grace")


def make_simulator(transport: str = "inprocess", **params: Any) -> Any:
    """Build the tau simulator: with ``transport="inprocess"`` Pythia runs in this process
    (:class:`~.inprocess.Pythia8TauInProcess`, no sockets); with ``"ipc"`` or ``"tcp"`` it is a
    PPX front-end process (:class:`~.simulator.Pythia8TauSimulator`). The traces are the same,
    bit for bit. Each executor worker builds its own."""
    if transport != "inprocess":
        from .simulator import Pythia8TauSimulator

        return Pythia8TauSimulator(transport=transport, **params)
    from etalumis_core import ConfigError

    from .inprocess import Pythia8TauInProcess

    if params.get("address") is not None:
        raise ConfigError("simulator.params.address connects to a running PPX front end; with "
                          "transport=inprocess Pythia runs in this process: drop the address or "
                          "use transport=ipc")
    kept = {k: v for k, v in params.items() if k not in PPX_ONLY and k != "address"}
    return Pythia8TauInProcess(**kept)


@hookimpl
def etalumis_register_simulators(register: Any) -> None:
    register("pythia8_tau", make_simulator,
             description="Pythia 8 tau decays (35x35x20 calorimeter), every random number under "
                         "control, over PPX or in process (params.transport)")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_pythia8_adapter.conf")
