"""The Dask executor: simulator runs spread over a Dask cluster, surviving lost workers.

``DaskExecutor`` maps an engine's work items (importance-sampling chunks, MH chains, dataset
shards) over the workers of a Dask cluster. Engines seed every item from the run's seed and the
item's index alone, so a run gives the same posterior, bit for bit, on any number of workers and
on the serial executor.

Where the cluster comes from (first match wins):

* ``client=``: an existing :class:`distributed.Client` (not closed by the executor);
* ``cluster=``: an existing cluster object such as ``dask_jobqueue.SLURMCluster`` (not closed);
* ``address=`` / ``scheduler_file=``: a running scheduler (``dask scheduler``);
* ``cluster_class=``: an import path such as ``"dask_jobqueue.SLURMCluster"`` built with
  ``cluster_options`` and scaled with ``scale`` (``int`` workers or a dict such as
  ``{"jobs": 8}``); closed with the executor, so a Hydra config alone can drive a SLURM run;
* otherwise a :class:`distributed.LocalCluster` of ``n_workers`` processes with
  ``threads_per_worker`` threads each (default one: simulators are CPU-bound and often not
  thread-safe), closed with the executor.

Simulators on workers
---------------------
Each worker thread builds its own simulator once, from the picklable
:class:`~etalumis_core.simulator.SimulatorSpec` (or a pickled simulator), and keeps it for the
worker's lifetime in a worker plugin (:class:`SimulatorCache`), keyed by a hash of the pickled
spec; a PPX simulator process launched by a worker is therefore launched once, not once per
task. The plugin closes the simulators when the worker shuts down.

Faults
------
A task lost with its worker (the worker process, or the machine, died) is rescheduled by the
scheduler on another worker, up to ``distributed.scheduler.allowed-failures`` times (default 3).
A task that raises is retried ``retries`` times. A retried item is rerun from its own seed, and
the results of the lost attempt never reach the client, so the posterior still has exactly the
requested traces, without duplicates, and equals the undisturbed run. :meth:`DaskExecutor.stats`
counts what was retried (``retried_tasks``, ``lost_attempts``, ``failed_attempts``); engines copy
the counts of their run into ``posterior.metadata``.

A trace that runs past ``timeout`` seconds kills its worker (see :class:`_Watchdog`): a Dask
task cannot be interrupted, but its process can, and the item is then rerun like any item lost
with its worker. When the scheduler gives up on an item, the run fails naming the item (and the
trace that timed out, if one did).

SLURM with dask-jobqueue
------------------------
::

    # pip install 'etalumis-core[dask]' dask-jobqueue
    from dask_jobqueue import SLURMCluster
    import etalumis_core as et
    from etalumis_core.dask_executor import DaskExecutor

    cluster = SLURMCluster(
        queue="regular", account="myproject", walltime="02:00:00",
        cores=32, processes=32, memory="64GB",      # 32 single-threaded workers per node
        job_extra_directives=["--constraint=cpu"],
        worker_extra_args=["--nthreads", "1"],
        job_script_prologue=["source /path/to/venv/bin/activate"],
    )
    cluster.scale(jobs=8)                           # 8 nodes: 256 workers
    with DaskExecutor(cluster=cluster, wait_for_workers=64) as executor:
        posterior = et.infer("toy_tau_decay", observe=observation, engine="importance",
                             num_traces=1_000_000, seed=1, executor=executor)
    posterior.metadata["retried_tasks"]           # tasks rerun after a lost worker

or from the command line, with the same options in ``conf/executor/dask.yaml``::

    etalumis infer simulator=toy_tau_decay executor=dask \\
        executor.params.cluster_class=dask_jobqueue.SLURMCluster \\
        executor.params.cluster_options='{cores: 32, processes: 32, memory: 64GB}' \\
        executor.params.scale='{jobs: 8}'

Without dask-jobqueue, start the scheduler and the workers in one batch script (``dask scheduler
--scheduler-file $SCRATCH/sched.json &`` then ``srun dask worker --nthreads 1 --scheduler-file
$SCRATCH/sched.json &``) and pass ``scheduler_file=`` to the executor.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import signal
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import cloudpickle
import dask
import distributed
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from .errors import SimulatorError
from .executors import DEFAULT_TIMEOUT, Executor, Task, run_item
from .progress import Progress
from .simulator import Simulator, SimulatorSpec, as_simulator

log = logging.getLogger(__name__)

PLUGIN_NAME = "etalumis-simulators"


class SimulatorCache(WorkerPlugin):
    """A worker's simulators, built on first use and closed when the worker shuts down.

    Keyed by spec token, then by thread: each worker thread gets its own simulator, because a
    simulator (a PPX process above all) serves one trace at a time. Simulators of at most
    ``max_simulators`` specs are kept; those of the least recently used spec are closed to make
    room (a worker serving several runs with different simulators one after the other).
    """

    name = PLUGIN_NAME
    # A second executor connecting to the same cluster must not replace (and so close) the
    # simulators the first one's tasks are using.
    idempotent = True

    def __init__(self, max_simulators: int = 4) -> None:
        self.max_simulators = max(1, int(max_simulators))
        self._setup_state()

    def _setup_state(self) -> None:
        self._simulators: OrderedDict[str, dict[int, Simulator]] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Only the configuration travels; simulators and the lock are per worker.
        return {"max_simulators": self.max_simulators}

    def __setstate__(self, state: dict) -> None:
        self.max_simulators = state["max_simulators"]
        self._setup_state()

    def setup(self, worker: Any) -> None:
        self._setup_state()

    def get(self, token: str, payload: bytes) -> Simulator:
        thread = threading.get_ident()
        with self._lock:
            per_thread = self._simulators.get(token)
            if per_thread is not None:
                self._simulators.move_to_end(token)
                if thread in per_thread:
                    return per_thread[thread]
        # Built outside the lock: launching a simulator process may take seconds.
        simulator = _build(payload)
        evicted: list[Simulator] = []
        with self._lock:
            self._simulators.setdefault(token, {})[thread] = simulator
            self._simulators.move_to_end(token)
            while len(self._simulators) > self.max_simulators:
                evicted += self._simulators.popitem(last=False)[1].values()
        for old in evicted:
            _close_quietly(old)
        return simulator

    def __len__(self) -> int:
        return sum(len(per_thread) for per_thread in self._simulators.values())

    def teardown(self, worker: Any) -> None:
        with self._lock:
            simulators = [simulator for per_thread in self._simulators.values()
                          for simulator in per_thread.values()]
            self._simulators.clear()
        for simulator in simulators:
            _close_quietly(simulator)


def _worker_environ() -> dict:
    """Dask's worker environment without ``MALLOC_TRIM_THRESHOLD_``: that setting stops glibc
    from raising its mmap threshold, so every array above 128 kB (a 35x35x20 calorimeter) is
    an mmap, page faults and an munmap; measured on toy_tau_decay, it halves a worker's
    traces/s (303 against 619)."""
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


def _build(payload: bytes) -> Simulator:
    # The spec this client sent through the scheduler, never anything read from disk.
    obj = cloudpickle.loads(payload)
    return obj.build() if isinstance(obj, SimulatorSpec) else as_simulator(obj)


def _close_quietly(simulator: Simulator) -> None:
    try:
        simulator.close()
    except Exception:   # a failing close must not keep the worker from shutting down
        log.exception("closing simulator %r failed", simulator)


def _worker_cache() -> SimulatorCache:
    worker = distributed.get_worker()
    cache = worker.plugins.get(PLUGIN_NAME)
    if cache is None:
        # The client registers the plugin before submitting; this covers a worker that
        # joined in between, so the simulator is still closed with the worker.
        cache = SimulatorCache()
        cache.setup(worker)
        worker.plugins[PLUGIN_NAME] = cache
    return cache


def _run_item(item: Any, index: int, *, task: Task, token: str, payload: bytes,
              timeout: float | None) -> Any:
    simulator = _worker_cache().get(token, payload)
    # Progress is reported by the client as whole items finish, so a rerun item never counts
    # twice on the bar; the report callback only feeds the watchdog.
    if timeout is None:
        return run_item(task, simulator, item, index, _ignore)
    watch = _watchdog.start(distributed.get_worker(), index, timeout)
    try:
        return run_item(task, simulator, item, index, watch.report)
    finally:
        _watchdog.stop(watch)


def _ignore(n: int) -> None:
    pass


TIMEOUT_TOPIC = "etalumis-timeout"


class _Watch:
    """One running work item, as the watchdog sees it."""

    __slots__ = ("worker", "key", "index", "timeout", "beat", "done")

    def __init__(self, worker: Any, index: int, timeout: float) -> None:
        self.worker, self.index, self.timeout = worker, index, timeout
        self.key = worker.get_current_task()
        self.beat, self.done = time.monotonic(), 0

    def report(self, n: int) -> None:
        self.beat = time.monotonic()
        self.done += n


class _Watchdog:
    """A thread per worker process that kills the worker when an item it runs has finished no
    trace for its timeout. A Dask task cannot be interrupted; its process can. The nanny starts
    a fresh worker and the scheduler reruns the item elsewhere, as for any lost worker (so up to
    ``distributed.scheduler.allowed-failures`` times), from the item's own seed. A worker
    without a nanny would not come back, so it is not killed: the hang is only logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any, index: int, timeout: float) -> _Watch:
        watch = _Watch(worker, index, timeout)
        with self._lock:
            self._running.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="etalumis-watchdog",
                                                daemon=True)
                self._thread.start()
        return watch

    def stop(self, watch: _Watch) -> None:
        with self._lock:
            self._running.discard(watch)

    def _loop(self) -> None:
        warned: set[_Watch] = set()
        while True:
            with self._lock:
                running = list(self._running)
            time.sleep(min([1.0] + [w.timeout / 4 for w in running]))
            now = time.monotonic()
            for watch in running:
                if now - watch.beat > watch.timeout and watch not in warned:
                    warned.add(watch)
                    self._stalled(watch)
            with self._lock:
                warned &= self._running

    def _stalled(self, watch: _Watch) -> None:
        what = (f"work item {watch.index}: trace {watch.done + 1} of the item ran longer than "
                f"the executor's timeout of {watch.timeout:g} s")
        if not getattr(watch.worker, "nanny", None):
            log.error("%s; this worker has no nanny to restart it, so it is left running", what)
            return
        log.error("%s; killing this worker so that its nanny restarts it and the item is rerun",
                  what)
        watch.worker.log_event(TIMEOUT_TOPIC, {"key": str(watch.key), "done": watch.done})
        time.sleep(0.5)   # for the event to reach the scheduler before the worker vanishes
        os.kill(os.getpid(), signal.SIGKILL)


_watchdog = _Watchdog()


KEY_PREFIX = "etalumis-"


class AttemptCounter(SchedulerPlugin):
    """Counts, on the scheduler, how often each of the executor's tasks was started, and how
    often an attempt ended by raising; a task started more than once was retried. Counting
    transitions sees every rerun: a task lost with its worker while running or queued there,
    one whose finished result was lost with its worker before the client fetched it, and one
    retried after an exception."""

    name = "etalumis-attempts"
    idempotent = True

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def transition(self, key: Any, start: str, finish: str, *args: Any,
                   stimulus_id: str | None = None, **kwargs: Any) -> None:
        if not (isinstance(key, str) and key.startswith(KEY_PREFIX)):
            return
        if finish == "processing":
            self.started[key] = self.started.get(key, 0) + 1
        elif start == "processing" and str(stimulus_id).startswith("task-erred"):
            self.failed[key] = self.failed.get(key, 0) + 1

    def pop(self, keys: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(key, attempts, failed)`` of the given keys that were started more than once,
        forgetting all of them."""
        out = []
        for key in keys:
            started = self.started.pop(key, 0)
            failed = self.failed.pop(key, 0)
            if started > 1:
                out.append((key, started, failed))
        return out


def _pop_attempts(dask_scheduler: Any, keys: list) -> list:
    return dask_scheduler.plugins[AttemptCounter.name].pop(keys)


def _import(path: str) -> Any:
    module, _, attr = path.rpartition(".")
    if not module:
        raise ValueError(f"cluster_class must be an import path such as "
                         f"'dask_jobqueue.SLURMCluster', got {path!r}")
    return getattr(importlib.import_module(module), attr)


class DaskExecutor(Executor):
    """Runs work items on a Dask cluster (see the module docstring for where it comes from).

    Parameters
    ----------
    address, scheduler_file:
        A running scheduler to connect to.
    n_workers, threads_per_worker, processes, memory_limit, dashboard_address:
        The local cluster built when no cluster is given (``n_workers`` defaults to the CPUs;
        the dashboard listens on the loopback interface only, on a free port, so that
        concurrent runs, e.g. a multirun sweep, do not clash: ``executor.client.dashboard_link``
        says where; ``dashboard_address=":8787"`` opens it to the network, ``None`` turns it
        off).
    cluster, client:
        An existing cluster or client; the executor does not close them.
    cluster_class, cluster_options, scale:
        A cluster built by import path (e.g. ``dask_jobqueue.SLURMCluster``), closed with the
        executor.
    retries:
        Extra attempts at a task that raised (a lost worker is handled by the scheduler).
    timeout:
        Seconds a trace may run (``None``: no limit). A worker whose item finishes no trace for
        this long is killed; its nanny restarts it and the scheduler reruns the item from its
        seed, as for any lost worker. Workers without a nanny (``processes=False``, ``dask
        worker --no-nanny``) are not killed, only logged.
    wait_for_workers:
        Wait for this many workers before the first run (a batch cluster starting up).
    max_simulators:
        Simulators each worker keeps built (one per spec and thread).
    """

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int = 1, processes: bool = True, retries: int = 2,
                 scheduler_file: str | None = None, cluster: Any = None, client: Any = None,
                 cluster_class: str | None = None, cluster_options: Mapping[str, Any] | None = None,
                 scale: int | Mapping[str, Any] | None = None, wait_for_workers: int = 0,
                 memory_limit: str | float | None = "auto",
                 dashboard_address: str | None = "127.0.0.1:0", max_simulators: int = 4,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        self.address = address
        self.scheduler_file = scheduler_file
        self.n_workers = n_workers
        self.threads_per_worker = int(threads_per_worker)
        self.processes = bool(processes)
        self.retries = int(retries)
        self.cluster_class = cluster_class
        self.cluster_options = dict(cluster_options or {})
        self.scale = scale
        self.wait_for_workers = int(wait_for_workers)
        self.memory_limit = memory_limit
        self.dashboard_address = dashboard_address
        self.max_simulators = int(max_simulators)
        self.timeout = float(timeout) if timeout is not None else None
        self._cluster = cluster
        self._client = client
        self._owns_cluster = False
        self._owns_client = False
        self._num_workers: int | None = None
        self._counting = False
        self._stats = {"tasks": 0, "retried_tasks": 0, "lost_attempts": 0, "failed_attempts": 0}
        # Connect now rather than in the first run, so that a run's timings (traces/s) do not
        # include starting the cluster.
        self._connect()

    # -- the cluster -------------------------------------------------------------------------
    @property
    def client(self) -> distributed.Client:
        """The Dask client."""
        if self._client is None:
            raise RuntimeError("this DaskExecutor is closed")
        return self._client

    def _connect(self) -> None:
        if self._cluster is None and self.address is None and self.scheduler_file is None:
            if self.cluster_class is not None:
                self._cluster = _import(self.cluster_class)(**self.cluster_options)
            else:
                import multiprocessing

                n = self.n_workers or multiprocessing.cpu_count()
                with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}):
                    self._cluster = distributed.LocalCluster(
                        n_workers=n, threads_per_worker=self.threads_per_worker,
                        processes=self.processes, memory_limit=self.memory_limit,
                        dashboard_address=self.dashboard_address)
            self._owns_cluster = True
            if self.scale is not None:
                if isinstance(self.scale, Mapping):
                    self._cluster.scale(**self.scale)
                else:
                    self._cluster.scale(int(self.scale))
        try:
            if self._cluster is not None:
                self._client = distributed.Client(self._cluster)
            elif self.scheduler_file is not None:
                self._client = distributed.Client(scheduler_file=self.scheduler_file)
            else:
                self._client = distributed.Client(self.address)
            self._owns_client = True
            self._client.register_plugin(SimulatorCache(self.max_simulators), name=PLUGIN_NAME)
            try:
                self._client.register_plugin(AttemptCounter(), name=AttemptCounter.name)
                self._counting = True
            except Exception as error:   # e.g. a scheduler that refuses pickled plugins
                log.warning("cannot count retried tasks on this scheduler: %s", error)
            if self.wait_for_workers:
                self._client.wait_for_workers(self.wait_for_workers)
        except BaseException:
            self.close()
            raise
        log.info("dask executor on %s (%d workers); dashboard %s",
                 self._client.scheduler.address, self.num_workers, self._client.dashboard_link)

    @property
    def num_workers(self) -> int:  # type: ignore[override]
        if self._client is None:
            return self.n_workers or 0
        if self._num_workers is None:
            self._num_workers = len(self._client.nthreads())
        return self._num_workers

    def close(self) -> None:
        client, cluster = self._client, self._cluster
        if client is not None and self._owns_client:
            client.close()
        if cluster is not None and self._owns_cluster:
            cluster.close()
        self._client = None if self._owns_client else client
        self._cluster = None if self._owns_cluster else cluster
        self._owns_client = self._owns_cluster = False

    # -- running -----------------------------------------------------------------------------
    def map(self, task: Task, items: Sequence[Any], simulator: Simulator | SimulatorSpec,
            progress: Progress | None = None, weights: Sequence[int] | None = None) -> list:
        items = list(items)
        if not items:
            return []
        weights = list(weights) if weights is not None else [1] * len(items)
        client = self.client
        self._num_workers = len(client.nthreads()) or self._num_workers
        payload = cloudpickle.dumps(simulator)
        token = hashlib.sha256(payload).hexdigest()[:16]
        run = uuid.uuid4().hex[:12]
        label = getattr(task, "__name__", "task").strip("_") or "task"
        keys = [f"{KEY_PREFIX}{label}-{run}-{k}" for k in range(len(items))]
        position = {key: k for k, key in enumerate(keys)}
        pending = {future.key: future for future in
                   client.map(_run_item, items, range(len(items)), key=keys, pure=False,
                              retries=self.retries, task=task, token=token, payload=payload,
                              timeout=self.timeout)}
        results: list = [None] * len(items)
        try:
            # Gathered in batches of whatever finished meanwhile: one round trip per batch
            # rather than per future, which would cost milliseconds per small task.
            for batch in distributed.as_completed(list(pending.values())).batches():
                for future, result in zip(batch, client.gather(batch)):
                    k = position[future.key]
                    results[k] = result
                    # Released at once: a worker lost later must not make the scheduler
                    # recompute results the client already has (and frees its memory).
                    del pending[future.key]
                    if progress is not None:
                        progress.update(weights[k])
                del batch
        except distributed.KilledWorker as error:
            client.cancel(list(pending.values()))
            raise self._lost(client, error, position) from None
        except BaseException:
            client.cancel(list(pending.values()))
            raise
        finally:
            pending.clear()
            self._count_retries(client, keys)
        self._stats["tasks"] += len(items)
        return results

    def _lost(self, client: distributed.Client, error: distributed.KilledWorker,
              position: Mapping[str, int]) -> SimulatorError:
        """The error for an item lost with its worker more often than the scheduler allows.
        Items queued on a killed worker are lost with it: the item that timed out, if one
        did, is the cause, whichever item the scheduler gave up on first."""
        attempts = f"{error.allowed_failures + 1} times"
        try:
            events = client.get_events(TIMEOUT_TOPIC)
        except Exception:   # a scheduler that keeps no events: say what is known
            events = ()
        keys = {str(key): k for key, k in position.items()}
        timed_out = sorted((keys[msg["key"]], msg["done"]) for _, msg in events
                           if msg.get("key") in keys)
        if timed_out:
            k, done = timed_out[0]
            return SimulatorError(
                f"work item {k}: trace {done + 1} of the item ran longer than the "
                f"executor's timeout of {self.timeout:g} s, and its worker was killed and the "
                f"item rerun, {attempts}. If the simulator's traces legitimately take that long, "
                f"raise the timeout: DaskExecutor(timeout=...), or executor.params.timeout=... "
                f"(null: no timeout)")
        return SimulatorError(
            f"work item {position.get(error.task, '?')} was lost with its worker {attempts}: the simulator crashes its "
            f"worker process (see the workers' logs), or the workers run out of memory. "
            f"distributed.scheduler.allowed-failures sets how often an item may be lost")

    def _count_retries(self, client: distributed.Client, keys: list[str]) -> None:
        if not self._counting:
            return
        try:
            attempts = client.run_on_scheduler(_pop_attempts, keys=keys)
        except Exception as error:   # e.g. a scheduler that refuses run_on_scheduler
            log.warning("could not ask the scheduler which tasks were retried: %s", error)
            return
        for key, started, failed in attempts:
            self._stats["retried_tasks"] += 1
            self._stats["failed_attempts"] += failed
            self._stats["lost_attempts"] += started - 1 - failed
            log.warning("task %s was started %d times (%d attempt(s) raised, %d lost with a "
                        "worker)", key, started, failed, started - 1 - failed)

    def stats(self) -> dict:
        """Counters over the executor's life: ``tasks`` run, ``retried_tasks`` (tasks run more
        than once), ``lost_attempts`` (attempts lost with their worker) and ``failed_attempts``
        (attempts that raised and were retried)."""
        return dict(self._stats)

    def __repr__(self) -> str:
        where = self.address or self.scheduler_file or self.cluster_class or "local"
        return f"DaskExecutor({where!r})"
