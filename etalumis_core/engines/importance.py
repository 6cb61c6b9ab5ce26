"""Importance sampling: independent traces, each weighted by likelihood × prior / proposal.

With the prior as proposal (the default controller) the weight is the likelihood; inference
compilation subclasses this engine with a controller that proposes from a network. Traces are
drawn in fixed-size chunks seeded by the run's seed and the chunk's index, so any executor, with
any number of workers, returns the same posterior.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ..controller import Controller
from ..executors import Executor
from ..posterior import Posterior, PosteriorBuilder
from ..progress import Progress
from ..simulator import Simulator, SimulatorSpec, run_traces, simulator_name
from ..seeding import chunk_rng, split
from .base import Engine


@dataclass(frozen=True)
class Chunk:
    """One work item: ``count`` traces drawn with the generator of chunk ``index``."""

    engine: "ImportanceSampling"
    observations: dict
    seed: int
    index: int
    count: int
    simulator: str


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
        name = simulator_name(simulator)
        chunks = split(num_traces, self.chunk_size)
        items = [Chunk(self, observations, seed, index, count, name)
                 for index, (_, count) in enumerate(chunks)]
        with Progress(num_traces, f"{self.name} sampling", progress) as bar:
            parts = executor.map(_sample_chunk, items, simulator, bar,
                                 weights=[count for _, count in chunks])
            posterior = Posterior.concat(parts)
            bar.show(ess=posterior.kish_ess)
        posterior.metadata = self.run_metadata(parts)
        return posterior

    # -- what a subclass with another proposal (inference compilation) changes -------------
    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """The context a worker draws a chunk in."""
        yield

    def chunk_metadata(self, controller: Controller) -> dict:
        """What a chunk reports of its controller (merged by :meth:`run_metadata`)."""
        return {}

    def run_metadata(self, parts: Sequence[Posterior]) -> dict:
        return {}


def _sample_chunk(simulator: Simulator, chunk: Chunk, report: Callable[[int], None]) -> Posterior:
    engine = chunk.engine
    with engine.sampling():
        controller = engine.make_controller(chunk_rng(chunk.seed, chunk.index), chunk.observations)
        builder = PosteriorBuilder(engine.max_value_size)
        for trace in run_traces(simulator, controller, chunk.count, engine.retries, report):
            builder.add(trace)
        controller.check_observations_used(chunk.simulator)
        return builder.build(engine.chunk_metadata(controller))
