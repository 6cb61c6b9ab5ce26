"""What every engine shares: the run's seeds, its chunks of work, and the run loop."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

from ..controller import Controller
from ..executors import Executor, SerialExecutor
from ..posterior import Posterior
from ..progress import Progress
from ..simulator import Simulator, SimulatorSpec

log = logging.getLogger(__name__)


def chunk_rng(seed: int, *index: int) -> np.random.Generator:
    """The generator of work item ``index`` of a run (one or more non-negative integers, e.g.
    round and item): a function of the run's seed and the index alone, so results do not
    depend on how items are spread over workers."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=index)))


def resolve_seed(seed: int | None) -> int:
    """``None`` draws a fresh seed; it is recorded so the run can be repeated exactly."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2 ** 63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def simulator_name(simulator: Simulator | SimulatorSpec) -> str:
    return getattr(simulator, "name", type(simulator).__name__)


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


def split(total: int, size: int) -> list[tuple[int, int]]:
    """``(start, count)`` chunks of at most ``size`` covering ``range(total)``."""
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def num_chunks(total: int, size: int) -> int:
    return math.ceil(total / size)
