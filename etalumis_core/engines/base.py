"""What every engine shares: the run's seeds, its chunks of work, and the run loop."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import numpy as np

from ..controller import Controller
from ..executors import Executor, SerialExecutor
from ..posterior import Posterior
from ..seeding import resolve_seed
from ..simulator import Simulator, SimulatorSpec, simulator_name

log = logging.getLogger(__name__)


class Engine:
    """An inference engine: a controller policy plus a way to split the work.

    ``run`` returns a :class:`Posterior` whose ``metadata`` records the engine, its options,
    the seed and timings.
    """

    name = "engine"

    def options(self) -> dict:
        return {}

    def run(self, simulator: Simulator | SimulatorSpec, observations: Mapping[str, Any],
            num_traces: int, seed: int | None = None, executor: Executor | None = None,
            progress: bool | None = None) -> Posterior:
        if not isinstance(num_traces, (int, np.integer)) or num_traces < 1:
            raise ValueError(f"num_traces must be a positive integer, got {num_traces!r}")
        seed = resolve_seed(seed)
        owned = executor is None
        executor = executor or SerialExecutor()
        counters = executor.stats()
        started = time.perf_counter()
        try:
            posterior = self._run(simulator, dict(observations or {}), int(num_traces), seed,
                                  executor, progress)
        finally:
            if owned:   # closes a simulator it built from a spec (a PPX process, say)
                executor.close()
        elapsed = time.perf_counter() - started
        posterior.metadata.update(engine=self.name, options=self.options(), seed=seed,
                                  num_traces=posterior.num_traces, wall_time_s=elapsed,
                                  traces_per_second=posterior.num_traces / max(elapsed, 1e-12),
                                  simulator=simulator_name(simulator),
                                  executor=executor.name, num_workers=executor.num_workers)
        for key, value in run_counters(counters, executor.stats()).items():
            posterior.metadata.setdefault(key, value)
        return posterior

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        raise NotImplementedError

    def make_controller(self, rng: np.random.Generator, observations: Mapping[str, Any]) -> Controller:
        return Controller(rng, observations)


def run_counters(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict:
    """An executor's stats over one run: numeric counters minus their value before it."""
    out = {}
    for key, value in after.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value - before.get(key, 0)
        out[key] = value
    return out
