"""Importance sampling: independent traces, each weighted by likelihood × prior / proposal.

With the prior as proposal (the default controller) the weight is the likelihood; inference
compilation subclasses this engine with a controller that proposes from a network. Traces are
drawn in fixed-size chunks seeded by the run's seed and the chunk's index, so any executor, with
any number of workers, returns the same posterior.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..executors import Executor
from ..posterior import Posterior, PosteriorBuilder
from ..progress import Progress
from ..simulator import Simulator, SimulatorSpec, run_trace, simulator_name
from ..seeding import chunk_rng, split
from .base import Engine


class ImportanceSampling(Engine):
    """Prior importance sampling.

    Parameters
    ----------
    chunk_size:
        Traces per work item; part of the result's definition (seeds are per chunk).
    retries:
        Attempts at a trace of a restartable (remote) simulator that failed, before giving up.
    max_value_size:
        Largest array (in elements) the posterior keeps per variable.
    """

    name = "importance"

    def __init__(self, chunk_size: int = 128, retries: int = 3, max_value_size: int = 4096) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.retries = int(retries)
        self.max_value_size = int(max_value_size)

    def options(self) -> dict:
        return {"chunk_size": self.chunk_size, "retries": self.retries}

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        chunks = split(num_traces, self.chunk_size)
        items = [(self, observations, seed, index, count, simulator_name(simulator))
                 for index, (_, count) in enumerate(chunks)]
        with Progress(num_traces, f"{self.name} sampling", progress) as bar:
            parts = executor.map(_sample_chunk, items, simulator, bar,
                                 weights=[count for _, count in chunks])
            posterior = Posterior.concat(parts)
            bar.show(ess=posterior.ess)
        return posterior


def _sample_chunk(simulator: Simulator, item: tuple, report: Callable[[int], None]) -> Posterior:
    engine, observations, seed, index, count, name = item
    controller = engine.make_controller(chunk_rng(seed, index), observations)
    builder = PosteriorBuilder(engine.max_value_size)
    retries = engine.retries
    for _ in range(count):
        builder.add(run_trace(simulator, controller, retries))
        report(1)
    controller.check_observations_used(name)
    return builder.build()
