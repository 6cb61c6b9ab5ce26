"""Where training batches come from: fresh traces from a simulator, or a trace dataset.

A source gives rank ``rank`` of ``num_ranks`` its slice of step ``s``'s *global* minibatch,
``batch(s, batch_size)``. The global batch is a function of the seed, the step and the global
batch size alone, never of the number of ranks: a single process sees the whole of it, and a
run resumed from a checkpoint, on any number of ranks, sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.dataset import TraceDataset, check_inflation, make_generation_controller
from ..data.records import Batch, collate, record_from_trace
from ..errors import ConfigError
from ..executors import ProcessPoolExecutor
from ..seeding import chunk_rng
from ..simulator import SimulatorSpec, as_simulator, run_traces

# Seed keys of validation and pre-scan traces: far above any training step's keys.
VALIDATION_KEY = 1 << 40
PRESCAN_KEY = VALIDATION_KEY + 1

# Cost model of a rank's slice of a dataset batch: each trace type in it costs one LSTM pass
# whose steps run a few small layers whatever the number of traces (PASS_STEP_COST per step),
# and each trace costs TRACE_COST more (reading it, its observation embedding, its share of the
# batched layers). Fitted to per-rank step times of 2-rank training on toy_tau_decay with a
# small 3-D CNN (about 0.9 ms per pass step and 7 ms per trace); only the ratio matters.
PASS_STEP_COST = 1.0
TRACE_COST = 8.0


def split_range(n: int, rank: int, num_ranks: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    return n * rank // num_ranks, n * (rank + 1) // num_ranks


def balanced_cuts(types: np.ndarray, lengths: np.ndarray, num_ranks: int) -> np.ndarray:
    """Boundaries ``(num_ranks + 1,)`` cutting traces sorted by type into contiguous slices of
    about equal cost (see :data:`PASS_STEP_COST`, :data:`TRACE_COST`), one trace at least each.

    Slices of different sizes are fine: the trainer weights each rank's gradient by its share
    of the global batch, so the global gradient does not depend on the cuts.
    """
    n = len(types)
    if num_ranks == 1:
        return np.array([0, n])
    cost = np.empty(n)
    starts = np.flatnonzero(np.r_[True, types[1:] != types[:-1]])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends):
        cost[a:b] = PASS_STEP_COST * max(int(lengths[a]), 1) / (b - a) + TRACE_COST
    cumulative = np.cumsum(cost)
    targets = cumulative[-1] * np.arange(1, num_ranks) / num_ranks
    # the boundary whose prefix cost is nearest each target
    above = np.searchsorted(cumulative, targets, side="left") + 1
    prefix = np.r_[0.0, cumulative]
    below = above - 1
    nearer_below = (np.abs(prefix[below] - targets)
                    <= np.abs(prefix[np.minimum(above, n)] - targets))
    cuts = np.where(nearer_below, below, above)
    # at least one trace per rank, in order
    cuts = np.clip(cuts, np.arange(1, num_ranks), n - num_ranks + np.arange(1, num_ranks))
    cuts = np.maximum.accumulate(cuts)
    for i in range(1, len(cuts)):
        cuts[i] = max(cuts[i], cuts[i - 1] + 1)
    return np.r_[0, cuts, n]


def draw_records(simulator: Any, seed: int, prior_inflation: float | None, first_key: int,
                 total: int, traces_per_seed: int | None, rank: int = 0, num_ranks: int = 1,
                 report: Callable[[int], None] | None = None) -> list:
    """Rank ``rank``'s share of ``total`` fresh traces drawn in chunks of ``traces_per_seed``
    (all at once for None), chunk ``j`` from ``chunk_rng(seed, first_key + j)``, as records:
    a function of its arguments alone, so any process draws the same ones. ``report(1)``
    after each trace (an executor's heartbeat)."""
    size = traces_per_seed or total
    chunks = math.ceil(total / size)
    a, b = split_range(chunks, rank, num_ranks)
    records = []
    for j in range(a, b):
        key = first_key + j
        count = min(size, total - j * size)
        controller = make_generation_controller(chunk_rng(seed, key), prior_inflation)
        records += [record_from_trace(t, key * size + i)
                    for i, t in enumerate(run_traces(simulator, controller, count, 3, report))]
    return records


@dataclass(frozen=True)
class BatchDraw:
    """Work item: the records of one step's batch (the arguments of :func:`draw_records`)."""

    seed: int
    prior_inflation: float | None
    first_key: int
    total: int
    traces_per_seed: int | None
    rank: int
    num_ranks: int


def _draw_batch(simulator: Any, item: BatchDraw,
                report: Callable[[int], None] | None) -> Batch:
    return collate(draw_records(simulator, item.seed, item.prior_inflation, item.first_key,
                                item.total, item.traces_per_seed, item.rank, item.num_ranks,
                                report))


class OnlineSource:
    """Fresh traces from the simulator (observations drawn from their distributions; optional
    prior inflation).

    The global batch of step ``s`` is drawn in chunks of ``traces_per_seed`` traces, chunk
    ``j`` from ``chunk_rng(seed, s * chunks + j)``; ranks draw contiguous shares of the chunks.
    ``traces_per_seed=None`` draws the whole batch from one seed (fastest; one rank only);
    ``1`` gives every trace its own seed, so that any number of ranks can share a batch.

    ``workers`` > 0 streams the batches from that many simulator worker processes (a
    :class:`~etalumis_core.executors.ProcessPoolExecutor`; or any ``executor``), which draw
    the next steps' batches while the network trains on this one, so the simulator does not
    hold the network up. Each step's batch is one work item drawn as above: the batches, and
    so the training, are the same with or without workers.
    """

    def __init__(self, simulator: Any, seed: int = 0, prior_inflation: float | None = None,
                 rank: int = 0, num_ranks: int = 1, traces_per_seed: int | None = None,
                 workers: int = 0, executor: Any = None) -> None:
        # A simulator built here from a spec is closed here; one given is the caller's.
        self._owned = isinstance(simulator, SimulatorSpec)
        self.simulator = simulator.build() if self._owned else as_simulator(simulator)
        self.name = getattr(simulator, "name", self.simulator.name)
        self.seed = int(seed)
        self.prior_inflation = check_inflation(prior_inflation)
        self.rank, self.num_ranks = int(rank), int(num_ranks)
        if traces_per_seed is None and self.num_ranks > 1:
            traces_per_seed = 1
        if traces_per_seed is not None and int(traces_per_seed) < 1:
            raise ConfigError(f"traces_per_seed must be at least 1, got {traces_per_seed}")
        self.traces_per_seed = None if traces_per_seed is None else int(traces_per_seed)
        if int(workers) < 0:
            raise ConfigError(f"data_workers must be 0 (draw in the training process) or a "
                              f"number of worker processes, got {workers}")
        self.workers = int(workers)
        self._stream: BatchStream | None = None
        if executor is not None or self.workers:
            owned = executor is None
            executor = executor or ProcessPoolExecutor(self.workers)
            self._stream = BatchStream(executor, simulator, self._draw_item,
                                       max(int(executor.num_workers or 1), 1), owned)

    def traces(self, key: int, count: int) -> list:
        controller = make_generation_controller(chunk_rng(self.seed, key), self.prior_inflation)
        return list(run_traces(self.simulator, controller, count, retries=3))

    def _draw_item(self, step: int, batch_size: int) -> BatchDraw:
        chunks = math.ceil(batch_size / (self.traces_per_seed or batch_size))
        return BatchDraw(self.seed, self.prior_inflation, step * chunks, batch_size,
                         self.traces_per_seed, self.rank, self.num_ranks)

    def batch(self, step: int, batch_size: int) -> Batch:
        if self._stream is not None:
            return self._stream.batch(step, batch_size)
        return _draw_batch(self.simulator, self._draw_item(step, batch_size), None)

    def validation_batch(self, size: int) -> Batch:
        """The same held-out traces on every rank."""
        return collate([record_from_trace(t, -1 - i)
                        for i, t in enumerate(self.traces(VALIDATION_KEY, size))])

    def prescan_sites(self, count: int) -> dict:
        """The addresses of this rank's share of ``count`` traces (to get layers before
        training), as :meth:`Batch.sites`."""
        if not count:
            return {}
        return collate(draw_records(self.simulator, self.seed, self.prior_inflation, PRESCAN_KEY,
                                    count, self.traces_per_seed, self.rank,
                                    self.num_ranks)).sites()

    def describe(self) -> dict:
        return {"kind": "online", "simulator": self.name, "seed": self.seed,
                "prior_inflation": self.prior_inflation, "traces_per_seed": self.traces_per_seed,
                "workers": self.workers}

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._owned:
            self.simulator.close()


class BatchStream:
    """Batches drawn ahead in the background: a thread keeps the executor busy with the next
    ``lookahead`` steps' :class:`BatchDraw` items while the caller trains, and
    :meth:`batch` hands each step's batch over when it is ready (or the error that drawing it
    raised). Steps are asked for in order; any other step restarts the stream there."""

    def __init__(self, executor: Any, simulator: Any, item_of: Any, lookahead: int,
                 owns_executor: bool = True) -> None:
        self.executor, self.simulator, self.item_of = executor, simulator, item_of
        self.lookahead = int(lookahead)
        self.owns_executor = owns_executor
        self._ready: dict[int, Any] = {}
        self._changed = threading.Condition()
        self._next = self._wanted = 0
        self._batch_size = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = False

    def batch(self, step: int, batch_size: int) -> Batch:
        with self._changed:
            if (self._thread is None or batch_size != self._batch_size
                    or not self._wanted <= step < self._next + self.lookahead):
                self._restart(step, batch_size)
            self._wanted = step
            self._changed.notify_all()
            while step not in self._ready and self._error is None:
                self._changed.wait()
            if self._error is not None:
                # The producer has stopped; a later call starts it afresh.
                error, self._error, self._thread = self._error, None, None
                raise error
            batch = self._ready.pop(step)
            self._wanted = step + 1
            self._changed.notify_all()
            return batch

    def _restart(self, step: int, batch_size: int) -> None:
        self._stop_thread()
        self._ready.clear()
        self._next = self._wanted = step
        self._batch_size = batch_size
        self._stop = False
        self._thread = threading.Thread(target=self._produce, daemon=True,
                                        name="etalumis-batch-stream")
        self._thread.start()

    def _produce(self) -> None:
        try:
            while True:
                with self._changed:
                    # Keep at most ``lookahead`` steps drawn ahead of the one wanted.
                    while not self._stop and self._next >= self._wanted + self.lookahead:
                        self._changed.wait()
                    if self._stop:
                        return
                    first = self._next
                    steps = range(first, self._wanted + self.lookahead)
                    items = [self.item_of(s, self._batch_size) for s in steps]
                batches = self.executor.map(_draw_batch, items, self.simulator)
                with self._changed:
                    if self._stop:
                        return
                    self._ready.update(zip(steps, batches))
                    self._next = steps.stop
                    self._changed.notify_all()
        except BaseException as error:   # handed to the training loop by batch()
            with self._changed:
                self._error = error
                self._changed.notify_all()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._stop = True
            self._changed.notify_all()
            self._changed.release()
            try:
                self._thread.join()
            finally:
                self._changed.acquire()
            self._thread = None

    def close(self) -> None:
        with self._changed:
            self._stop_thread()
        if self.owns_executor:
            self.executor.close()


class DatasetSource:
    """Minibatches from a :class:`~etalumis_core.data.TraceDataset`; the last
    ``validation_size`` traces are held out for validation.

    Epoch ``e`` visits the training traces in the order ``chunk_rng(seed, e).permutation``; the
    global batch of a step is the next ``batch_size`` of them, sorted by trace type and dealt
    out in contiguous slices of about equal cost (:func:`balanced_cuts`), so each rank runs few
    LSTM passes. With ``bucket_window`` W > 1 the traces of W consecutive global batches are
    sorted together and cut into W batches (visited in a shuffled order): most batches then
    hold a single trace type, at the price of batches that are no longer i.i.d. W = 1 leaves
    each global batch's content, hence its gradient, unchanged.
    """

    def __init__(self, dataset: Any, seed: int = 0, validation_size: int = 0, rank: int = 0,
                 num_ranks: int = 1, bucket_window: int = 1) -> None:
        self.dataset = dataset if isinstance(dataset, TraceDataset) else TraceDataset(dataset)
        self.seed = int(seed)
        self.validation_size = int(validation_size)
        self.num_train = len(self.dataset) - self.validation_size
        if self.num_train < 1:
            raise ConfigError(f"validation_size {validation_size} leaves no training traces in "
                              f"a dataset of {len(self.dataset)}")
        if int(bucket_window) < 1:
            raise ConfigError(f"bucket_window must be at least 1, got {bucket_window}")
        self.rank, self.num_ranks = int(rank), int(num_ranks)
        self.bucket_window = int(bucket_window)
        self._epoch: tuple[int, np.ndarray] | None = None
        self._window: tuple[tuple, np.ndarray] | None = None
        self._type_lengths = np.array([len(t) for t in self.dataset.trace_types] or [0])

    def global_ids(self, step: int, batch_size: int) -> np.ndarray:
        """Trace ids of the step's global batch, sorted by trace type."""
        steps_per_epoch = max(self.num_train // batch_size, 1)
        epoch, pos = divmod(step, steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, chunk_rng(self.seed, epoch).permutation(self.num_train))
        w = self.bucket_window
        first = (pos // w) * w
        count = min(w, steps_per_epoch - first)
        key = (epoch, first, batch_size)
        if self._window is None or self._window[0] != key:
            span = np.arange(first * batch_size, (first + count) * batch_size)
            ids = self._epoch[1][span % self.num_train]
            ids = ids[np.argsort(self.dataset.trace_type[ids], kind="stable")]
            batches = ids.reshape(count, batch_size)
            if count > 1:
                batches = batches[chunk_rng(self.seed, epoch, first, 1).permutation(count)]
            self._window = (key, batches)
        return self._window[1][pos - first]

    def batch(self, step: int, batch_size: int) -> Batch:
        ids = self.global_ids(step, batch_size)
        types = self.dataset.trace_type[ids]
        cuts = balanced_cuts(types, self._type_lengths[types], self.num_ranks)
        return self.dataset.batch(ids[cuts[self.rank]:cuts[self.rank + 1]])

    def validation_batch(self, size: int) -> Batch:
        size = min(size, self.validation_size)
        if size < 1:
            raise ConfigError("validation needs validation_size > 0 (traces held out of the "
                              "dataset)")
        return self.dataset.batch(np.arange(self.num_train, self.num_train + size))

    def prescan_sites(self, count: int) -> dict:
        """Every address of the dataset (its merged address dictionary)."""
        return dict(self.dataset.addresses)

    def describe(self) -> dict:
        return {"kind": "dataset", "path": str(self.dataset.path), "seed": self.seed,
                "validation_size": self.validation_size, "bucket_window": self.bucket_window}

    def close(self) -> None:
        pass


def as_source(data: Any, seed: int, prior_inflation: float | None = None,
              validation_size: int = 0, rank: int = 0, num_ranks: int = 1,
              traces_per_seed: int | None = None, bucket_window: int = 1,
              workers: int = 0) -> Any:
    """Rank ``rank``'s source from a simulator (online), a dataset or its path, or a source
    (used as it is)."""
    if hasattr(data, "batch") and hasattr(data, "validation_batch"):
        return data
    if isinstance(data, TraceDataset) or (isinstance(data, (str, os.PathLike))
                                          and (Path(data) / "manifest.json").exists()):
        return DatasetSource(data, seed, validation_size, rank, num_ranks, bucket_window)
    return OnlineSource(data, seed, prior_inflation, rank, num_ranks, traces_per_seed, workers)
