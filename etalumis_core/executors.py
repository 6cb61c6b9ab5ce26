"""Executors: where simulator runs happen.

An executor maps a task over items; each task receives the worker's own simulator (built once
per worker from a picklable :class:`~etalumis_core.simulator.SimulatorSpec`, or the simulator
itself when it pickles), the item, and a callback reporting finished traces. Engines split work
into items whose seeds depend only on the run's seed and the item's index, never on the number
of workers, so every executor gives the same result.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing
from typing import Any, Callable, Sequence

from .errors import SimulatorError
from .progress import Progress
from .simulator import Simulator, SimulatorSpec

log = logging.getLogger(__name__)

Task = Callable[[Simulator, Any, Callable[[int], None]], Any]


def build_simulator(simulator: Simulator | SimulatorSpec) -> tuple[Simulator, bool]:
    """``(simulator, owned)``: a spec is built (and owned by the caller, who closes it)."""
    if isinstance(simulator, SimulatorSpec):
        return simulator.build(), True
    return simulator, False


class Executor:
    """Runs ``task(simulator, item, report)`` for every item; results in the items' order."""

    name = "executor"
    num_workers = 1

    def map(self, task: Task, items: Sequence[Any], simulator: Simulator | SimulatorSpec,
            progress: Progress | None = None, weights: Sequence[int] | None = None) -> list:
        raise NotImplementedError

    def stats(self) -> dict:
        """What the executor counted (e.g. tasks retried after a lost worker). Numeric counters
        accumulate over the executor's life; :meth:`Engine.run` records a run's share of them
        in ``posterior.metadata``."""
        return {}

    def close(self) -> None:
        """Release workers."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SerialExecutor(Executor):
    """Everything in this process, one item after the other. A simulator built from a spec is
    kept for the next ``map`` of the same spec (engines with many rounds of work) until
    :meth:`close`."""

    name = "serial"

    def __init__(self) -> None:
        self._spec: Simulator | SimulatorSpec | None = None
        self._built: Simulator | None = None

    def map(self, task: Task, items: Sequence[Any], simulator: Simulator | SimulatorSpec,
            progress: Progress | None = None, weights: Sequence[int] | None = None) -> list:
        report = progress.update if progress is not None else (lambda n: None)
        if isinstance(simulator, SimulatorSpec):
            if simulator is not self._spec:
                self.close()
                self._built, self._spec = simulator.build(), simulator
            simulator = self._built
        return [task(simulator, item, report) for item in items]

    def close(self) -> None:
        if self._built is not None:
            self._built.close()
        self._spec = self._built = None


_worker_simulator: Simulator | None = None


def _init_worker(simulator: Simulator | SimulatorSpec) -> None:
    global _worker_simulator
    _worker_simulator, owned = build_simulator(simulator)
    if owned:
        atexit.register(_worker_simulator.close)


def _run_in_worker(task: Task, item: Any) -> Any:
    assert _worker_simulator is not None
    return task(_worker_simulator, item, lambda n: None)


class ProcessPoolExecutor(Executor):
    """A local pool of worker processes, each holding its own simulator for its lifetime."""

    name = "process"

    def __init__(self, num_workers: int | None = None, start_method: str = "spawn") -> None:
        self.num_workers = num_workers or multiprocessing.cpu_count()
        self.start_method = start_method
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pool_simulator: Simulator | SimulatorSpec | None = None

    def _pool_for(self, simulator: Simulator | SimulatorSpec) -> cf.ProcessPoolExecutor:
        # Workers and their simulators live until close(), or until a map for another simulator:
        # engines that work in rounds (SMC) would otherwise start the pool at every round.
        if self._pool is None or simulator is not self._pool_simulator:
            self.close()
            context = multiprocessing.get_context(self.start_method)
            self._pool = cf.ProcessPoolExecutor(self.num_workers, mp_context=context,
                                                initializer=_init_worker, initargs=(simulator,))
            self._pool_simulator = simulator
        return self._pool

    def map(self, task: Task, items: Sequence[Any], simulator: Simulator | SimulatorSpec,
            progress: Progress | None = None, weights: Sequence[int] | None = None) -> list:
        weights = list(weights) if weights is not None else [1] * len(items)
        pool = self._pool_for(simulator)
        futures = {pool.submit(_run_in_worker, task, item): k for k, item in enumerate(items)}
        results: list = [None] * len(items)
        try:
            for future in cf.as_completed(futures):
                k = futures[future]
                results[k] = future.result()
                if progress is not None:
                    progress.update(weights[k])
        except cf.process.BrokenProcessPool as error:
            self.close()
            raise SimulatorError(
                f"a worker process of the {self.start_method!r} pool died ({error}). If this "
                f"runs from a script, put the script's top level under "
                f"`if __name__ == '__main__':` (workers re-import it); otherwise the "
                f"simulator crashed its worker (see the messages above)") from error
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._pool_simulator = None
