"""Hook specifications: what a plugin can add to etalumis.

Every hook is a registry: it receives a ``register`` callback and calls it once per thing it
adds, so that the host can reject duplicate names and report which plugin registered what.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "etalumis"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def etalumis_register_simulators(register: Register) -> None:
    """Register simulator adapters.

    Parameters: ``register(name, factory, description="")`` where ``factory(**params)`` returns
    an :class:`etalumis_core.Simulator` (a Python model or a PPX process adapter) and is a
    module-level callable, so that worker processes can rebuild the simulator.
    Called: once when the plugin manager is built.
    """


@hookspec
def etalumis_register_engines(register: Register) -> None:
    """Register inference engines.

    Parameters: ``register(name, factory, description="")`` where ``factory(**options)`` returns
    an :class:`etalumis_core.engines.Engine`.
    Called: once when the plugin manager is built.
    """


@hookspec
def etalumis_register_proposals(register: Register) -> None:
    """Register proposal architectures (inference networks).

    Parameters: ``register(name, factory, description="")`` where ``factory(**options)`` returns
    an observation-embedding builder for :class:`etalumis_core.nn.ProposalNetwork`.
    Called: once when the plugin manager is built.
    """


@hookspec
def etalumis_register_trainers(register: Register) -> None:
    """Register training loops.

    Parameters: ``register(name, factory, description="")`` where ``factory(**options)`` returns
    a trainer with ``train(network, data, output_dir, ...)``.
    Called: once when the plugin manager is built.
    """


@hookspec
def etalumis_register_executors(register: Register) -> None:
    """Register executors (where simulator runs happen).

    Parameters: ``register(name, factory, description="")`` where ``factory(**options)`` returns
    an :class:`etalumis_core.executors.Executor`.
    Called: once when the plugin manager is built.
    """


@hookspec
def etalumis_config_paths(register: Callable[[str], None]) -> None:
    """Register Hydra config search paths (``pkg://package.conf`` or ``file:///dir``).

    Parameters: ``register(path)``; the directory holds files such as
    ``simulator/NAME.yaml`` that add options to the application's config groups.
    Called: when Hydra builds its search path.
    """


KINDS = ("simulators", "engines", "proposals", "trainers", "executors")

