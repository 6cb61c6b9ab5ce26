"""The one obvious entry point: ``infer(simulator, observe=..., engine=..., num_traces=..., seed=...)``."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .controller import Controller
from .engines.base import Engine
from .seeding import resolve_seed
from .executors import Executor
from .plugins import Plugins, load_plugins
from .posterior import Posterior
from .simulator import Simulator, SimulatorSpec, as_simulator, run_trace
from .trace import Trace


def _resolve(kind: str, value: Any, plugins: Plugins | None, options: Mapping[str, Any]) -> tuple[Any, Plugins | None]:
    if not isinstance(value, str):
        if options:
            raise TypeError(f"options {sorted(options)} apply only when the {kind[:-1]} is "
                            f"given by name")
        return value, plugins
    if plugins is None:
        # Built-in names need no entry-point scan (importing every installed plugin costs
        # a noticeable fraction of a second); plugins cannot shadow built-in names anyway.
        builtins = load_plugins(load_entry_points=False).registries[kind]
        if value in builtins.entries:
            return builtins.create(value, **options), None
        plugins = load_plugins()
    return plugins.registries[kind].create(value, **options), plugins


def resolve_simulator(simulator: Any, plugins: Plugins | None,
                      options: Mapping[str, Any] | None) -> tuple[Simulator | SimulatorSpec,
                                                               Plugins | None]:
    """A registered simulator's name becomes a spec (built with ``options``), a function a
    :class:`Simulator`; a spec or a simulator stays as it is."""
    if isinstance(simulator, str):
        plugins = plugins or load_plugins()
        entry = plugins.simulators.get(simulator)
        return SimulatorSpec(entry.factory, options, name=simulator), plugins
    if isinstance(simulator, SimulatorSpec):
        return simulator, plugins
    return as_simulator(simulator), plugins


def infer(simulator: Any, observe: Mapping[str, Any] | None = None, engine: str | Engine = "importance",
          num_traces: int = 1000, seed: int | None = None, executor: str | Executor | None = None,
          progress: bool | None = None, plugins: Plugins | None = None,
          simulator_options: Mapping[str, Any] | None = None,
          executor_options: Mapping[str, Any] | None = None, **engine_options: Any) -> Posterior:
    """Infer the posterior over a simulator's execution traces given observations.

    ``simulator``: a Python function, a :class:`Simulator`, a :class:`SimulatorSpec`, or the name
    of a registered simulator (built with ``simulator_options``). ``engine``: ``"importance"``,
    ``"lmh"``, ``"rmh"``, ``"smc"``, ``"ic"`` (or any registered engine) with ``engine_options``, or an
    :class:`Engine`. The same seed gives the same posterior, bit for bit; ``seed=None`` draws
    one and records it in ``posterior.metadata["seed"]``.
    """
    simulator, plugins = resolve_simulator(simulator, plugins, simulator_options)
    engine_obj, plugins = _resolve("engines", engine, plugins, engine_options)
    if executor is None:
        executor_obj = None
    else:
        executor_obj, plugins = _resolve("executors", executor, plugins, executor_options or {})
    try:
        return engine_obj.run(simulator, observe or {}, num_traces, seed, executor_obj, progress)
    finally:
        if isinstance(executor, str) and executor_obj is not None:
            executor_obj.close()


def simulate(simulator: Any, seed: int | None = None,
             observations: Mapping[str, Any] | None = None) -> Trace:
    """Run the simulator forward once, recording everything: observed values that the
    simulator leaves open are drawn from their distributions (a synthetic observation and its
    ground truth in one trace)."""
    sim = as_simulator(simulator.build() if isinstance(simulator, SimulatorSpec) else simulator)
    rng = np.random.default_rng(resolve_seed(seed))
    controller = Controller(rng, observations, sample_missing_observations=True)
    return run_trace(sim, controller)


def observations_of(trace: Trace) -> dict[str, Any]:
    """The observed values of a trace by name (what :func:`simulate` drew)."""
    return {v.name: v.value for v in trace.observations() if v.name is not None}
