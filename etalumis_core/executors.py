"""Executors: where simulator runs happen.

An executor maps a task over items; each task receives the worker's own simulator (built once
per worker from a picklable :class:`~etalumis_core.simulator.SimulatorSpec`, or the simulator
itself when it pickles), the item, and a callback reporting finished traces. Engines split work
into items whose seeds depend only on the run's seed and the item's index, never on the number
of workers, so every executor gives the same result.

Limits
------
A trace that never ends is stopped in two ways. A Python simulator's endless loop of random
choices fails with :class:`~etalumis_core.errors.TraceTooLongError` at the simulator's
``max_choices``, on any executor. A trace that hangs (sleeps, waits on a lock or a socket, loops
in native code) is stopped only by a pool: the process pool and the Dask executor kill a worker
that finishes no trace for ``timeout`` seconds (600 by default), restart it and rerun the work
item from its own seed, so the result equals the undisturbed run; after ``retries`` reruns the
run fails, naming the item. The serial executor runs in the caller's process and has no timeout.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Callable, Sequence

from .errors import EtalumisError, SimulatorError
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


DEFAULT_TIMEOUT = 600.0


def run_item(task: Task, simulator: Simulator, item: Any, index: int,
             report: Callable[[int], None]) -> Any:
    """Run one work item in a worker. A simulator's own exception becomes a
    :class:`SimulatorError` naming the work item and the trace that raised (with its seed), so
    that a failure far away in a pool can be reproduced; etalumis's errors pass unchanged."""
    try:
        return task(simulator, item, report)
    except EtalumisError:
        raise
    except Exception as error:
        notes = "; ".join(getattr(error, "__notes__", ()))
        raise SimulatorError(
            f"work item {index}: the simulator raised {type(error).__name__}: {error}"
            + (f" ({notes})" if notes else "")) from error


# -- the process pool's workers ---------------------------------------------------------------
# Each worker claims a slot of four doubles in memory shared with the parent: its pid, the index
# of the item it runs (-1: none), when it last finished a trace (time.monotonic, which all
# processes of a machine share) and how many traces of the item it finished. The parent reads
# the slots to find a trace that runs longer than the timeout and kills that worker.
_PID, _ITEM, _BEAT, _DONE = range(4)
_SLOT = 4

ORPHAN_POLL_SECONDS = 1.0
_worker_simulator: Simulator | None = None
_worker_build_error: Exception | None = None
_worker_beats: Any = None
_worker_slot = -1


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (killed, so it could not shut the pool down) is adopted by
    init and would run its work item to the end for nobody: it exits instead."""
    while True:
        time.sleep(ORPHAN_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(simulator: Simulator | SimulatorSpec, beats: Any = None, claimed: Any = None) -> None:
    global _worker_simulator, _worker_build_error, _worker_beats, _worker_slot
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="etalumis-orphan-watch").start()
    try:
        _worker_simulator, owned = build_simulator(simulator)
    except Exception as error:
        # An initializer that raises breaks the pool, and the parent learns only that a
        # worker died: keep the error for the first item to raise, so the caller reads it.
        _worker_build_error = error
        return
    if owned:
        atexit.register(_worker_simulator.close)
    if beats is not None:
        with claimed.get_lock():
            slot, claimed.value = claimed.value, claimed.value + 1
        if (slot + 1) * _SLOT <= len(beats):
            _worker_beats, _worker_slot = beats, slot * _SLOT
            beats[_worker_slot + _PID] = os.getpid()
            beats[_worker_slot + _ITEM] = -1


def _run_in_worker(task: Task, item: Any, index: int) -> Any:
    if _worker_build_error is not None:
        raise _worker_build_error
    assert _worker_simulator is not None
    beats, slot = _worker_beats, _worker_slot
    if beats is None:
        return run_item(task, _worker_simulator, item, index, _ignore)
    beats[slot + _DONE] = 0
    # The time first, then the item: the parent reads them in the other order, so it never
    # pairs a new item with the previous item's time.
    beats[slot + _BEAT] = time.monotonic()
    beats[slot + _ITEM] = index
    monotonic = time.monotonic

    def report(n: int) -> None:
        beats[slot + _BEAT] = monotonic()
        beats[slot + _DONE] += n

    try:
        return run_item(task, _worker_simulator, item, index, report)
    finally:
        beats[slot + _ITEM] = -1


def _ignore(n: int) -> None:
    pass


class ProcessPoolExecutor(Executor):
    """A local pool of worker processes, each holding its own simulator for its lifetime
    (an error building it in a worker, such as a front end not yet compiled, is raised by
    :meth:`map` as itself).

    Parameters
    ----------
    num_workers:
        Worker processes (default: one per CPU).
    start_method:
        ``"spawn"`` (default), ``"forkserver"`` or ``"fork"``.
    timeout:
        Seconds a trace may run: a worker that finishes no trace of its item for this long is
        killed, the pool restarted, and the item rerun from its own seed (so the result equals
        the undisturbed run). ``None`` waits for ever. Engines report each trace (MH: each
        step), so this bounds one trace, not a whole item.
    retries:
        Reruns of an item whose trace timed out before the run fails.
    """

    name = "process"

    def __init__(self, num_workers: int | None = None, start_method: str = "spawn",
                 timeout: float | None = DEFAULT_TIMEOUT, retries: int = 2) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.num_workers = num_workers or multiprocessing.cpu_count()
        self.start_method = start_method
        self.timeout = float(timeout) if timeout is not None else None
        self.retries = int(retries)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pool_simulator: Simulator | SimulatorSpec | None = None
        self._beats: Any = None
        self._stats = {"tasks": 0, "retried_tasks": 0, "timed_out_attempts": 0}

    def _pool_for(self, simulator: Simulator | SimulatorSpec) -> cf.ProcessPoolExecutor:
        # Workers and their simulators live until close(), or until a map for another simulator:
        # engines that work in rounds (SMC) would otherwise start the pool at every round.
        if self._pool is None or simulator is not self._pool_simulator:
            self.close()
            context = multiprocessing.get_context(self.start_method)
            initargs: tuple = (simulator,)
            if self.timeout is not None:
                # Unclaimed slots read as idle, with no process to kill.
                self._beats = context.RawArray("d", [0.0, -1.0, 0.0, 0.0] * self.num_workers)
                initargs += (self._beats, context.Value("i", 0))
            self._pool = cf.ProcessPoolExecutor(self.num_workers, mp_context=context,
                                                initializer=_init_worker, initargs=initargs)
            self._pool_simulator = simulator
        return self._pool

    def map(self, task: Task, items: Sequence[Any], simulator: Simulator | SimulatorSpec,
            progress: Progress | None = None, weights: Sequence[int] | None = None) -> list:
        items = list(items)
        weights = list(weights) if weights is not None else [1] * len(items)
        results: list = [None] * len(items)
        todo = set(range(len(items)))
        timeouts = [0] * len(items)
        while todo:
            stalled = self._run(task, items, todo, simulator, results, progress, weights)
            if stalled is None:
                break
            # The killed worker broke the pool: start another, and rerun what did not finish
            # (seeded by item, so the reruns give what the lost attempts would have).
            k, done = stalled
            self.close()
            timeouts[k] += 1
            self._stats["timed_out_attempts"] += 1
            if timeouts[k] > self.retries:
                raise SimulatorError(
                    f"work item {k}: trace {done + 1} of the item ran longer than the "
                    f"executor's timeout of {self.timeout:g} s on all {timeouts[k]} attempts "
                    f"(each time the worker was killed and the item rerun from its seed). If "
                    f"the simulator's traces legitimately take that long, raise the timeout: "
                    f"ProcessPoolExecutor(timeout=...), or executor.params.timeout=... "
                    f"(null: no timeout)")
            log.warning("work item %d: trace %d ran longer than %g s; its worker was killed "
                        "and the item is rerun from its seed (attempt %d of %d)", k, done + 1,
                        self.timeout, timeouts[k] + 1, self.retries + 1)
        self._stats["tasks"] += len(items)
        self._stats["retried_tasks"] += sum(1 for n in timeouts if n)
        return results

    def _run(self, task: Task, items: list, todo: set[int], simulator: Simulator | SimulatorSpec,
             results: list, progress: Progress | None, weights: list[int]
             ) -> tuple[int, int] | None:
        """Run the items ``todo`` (removing each that finishes); ``(item, traces it finished)``
        of an item whose worker was killed for running past the timeout, else None."""
        pool = self._pool_for(simulator)
        futures = {pool.submit(_run_in_worker, task, items[k], k): k for k in sorted(todo)}
        pending = set(futures)
        poll = None if self.timeout is None else min(1.0, self.timeout / 4)
        stalled = None
        try:
            while pending:
                finished, pending = cf.wait(pending, poll, return_when=cf.FIRST_COMPLETED)
                for future in sorted(finished, key=futures.__getitem__):   # errors by item
                    k = futures[future]
                    try:
                        results[k] = future.result()
                    except cf.process.BrokenProcessPool:
                        if stalled is None:
                            raise
                        continue   # lost with the pool: rerun
                    todo.discard(k)
                    if progress is not None:
                        progress.update(weights[k])
                if stalled is None and self.timeout is not None:
                    stalled = self._kill_stalled()
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
        return stalled

    def _kill_stalled(self) -> tuple[int, int] | None:
        """Kill a worker whose trace has run longer than the timeout."""
        beats, now = self._beats, time.monotonic()
        for slot in range(0, len(beats), _SLOT):
            k = beats[slot + _ITEM]
            if k >= 0 and now - beats[slot + _BEAT] > self.timeout:
                pid, done = int(beats[slot + _PID]), int(beats[slot + _DONE])
                if pid not in {child.pid for child in multiprocessing.active_children()}:
                    continue   # only ever a worker process of ours
                os.kill(pid, signal.SIGKILL)   # stuck in its trace
                return int(k), done
        return None

    def stats(self) -> dict:
        """Counters over the executor's life: ``tasks`` run, ``retried_tasks`` (rerun after a
        trace timed out) and ``timed_out_attempts``."""
        return dict(self._stats)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._pool_simulator = self._beats = None
