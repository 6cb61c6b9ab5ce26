"""Data-parallel training of proposal networks over ``torch.distributed``.

Registered as the ``distributed`` trainer; it trains any registered proposal architecture.
Every process (a *rank*) holds a full copy of the network; a step is:

1. each rank takes its slice of the step's *global* minibatch (from its own shard of a
   :class:`~etalumis_core.data.TraceDataset`, or simulated online from per-trace seeds);
2. addresses that any rank meets for the first time get their layers on every rank, in the
   same (sorted) order, initialised by rank 0 (so all ranks keep identical parameter lists;
   pre-scanning the data first makes this a no-op);
3. forward and backward on the local slice; every parameter's gradient, weighted by the
   slice's share of the global batch, is summed over ranks in one flat buffer (None counts
   as zeros; a parameter no rank touched keeps ``grad=None`` and stays out of the buffer,
   exactly as in a single-process step on the global batch);
4. the optimizer (Adam or SGD, optionally wrapped in LARC) steps on every rank alike.

The global minibatch of a step depends only on the seed, the step and the global batch size,
never on the number of ranks: a run on R ranks follows the single-process run on the same
global batch up to floating-point rounding, and a checkpoint (written by rank 0; it holds no
per-rank state) resumes on any number of ranks. Minibatches are bucketed by trace type: the
traces of a global batch (or of a window of ``bucket_window`` batches) are sorted by trace type
before being dealt out, so each rank runs few LSTM passes and ranks train on neighbouring
control-flow paths at the same time.

Large global batches use the linear scaling rule with warm-up (Goyal et al. 2017): the
learning rate ``lr`` is meant for ``base_batch_size`` traces and is scaled by
``batch_size / base_batch_size``, reached linearly over ``warmup_steps``, then decays
polynomially to ``lr_end`` (``lr_decay_power``); LARC (``larc=true``) keeps every layer's step
small relative to its weights.

Backend: ``nccl`` when CUDA is available, ``gloo`` otherwise (``backend=auto``). The network
itself stays on the CPU (the core's network builds CPU tensors); with NCCL the flat gradient
buffer is reduced on the rank's GPU.
"""

from __future__ import annotations

import csv
import datetime
import logging
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist

from etalumis_core.data.records import Batch, collate, record_from_trace
from etalumis_core.errors import ConfigError
from etalumis_core.nn.network import ProposalNetwork
from etalumis_core.nn.train import (CHECKPOINT, DatasetSource, OnlineSource, Trainer,
                                    TrainingResult, polynomial_decay)
from etalumis_core.progress import Progress

log = logging.getLogger(__name__)

THROUGHPUT_CSV = "throughput.csv"
# Per-trace seed keys of online training are step * batch_size + i; validation and pre-scan
# traces use keys far above any reachable training key.
_VALIDATION_KEY = 1 << 52
_PRESCAN_KEY = (1 << 52) + (1 << 44)


# ----------------------------------------------------------------------------------------------
# Process group


def choose_backend(backend: str | None = "auto") -> str:
    """``nccl`` when CUDA is available, else ``gloo`` (for ``auto`` or None)."""
    if backend in (None, "auto"):
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl", "mpi"):
        raise ConfigError(f"backend must be auto, gloo, nccl or mpi, got {backend!r}")
    return backend


def detect_launch(env: Mapping[str, str] | None = None) -> dict:
    """Rank, world size and local rank from the launcher's environment: torchrun (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``), else SLURM srun (``SLURM_PROCID``, ``SLURM_NTASKS``,
    ``SLURM_LOCALID``), else a single process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return {"launcher": "torchrun", "rank": int(env["RANK"]),
                "world_size": int(env["WORLD_SIZE"]),
                "local_rank": int(env.get("LOCAL_RANK", 0))}
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return {"launcher": "slurm", "rank": int(env["SLURM_PROCID"]),
                "world_size": int(env["SLURM_NTASKS"]),
                "local_rank": int(env.get("SLURM_LOCALID", 0))}
    return {"launcher": "none", "rank": 0, "world_size": 1, "local_rank": 0}


def init_distributed(backend: str | None = "auto", init_method: str | None = None,
                     timeout_s: float = 1800.0) -> tuple[int, int, int, bool]:
    """Join (or reuse) the default process group.

    Returns ``(rank, world_size, local_rank, created)``; ``created`` says whether this call
    made the group (and so should destroy it). A single process with no launcher environment
    gets no group at all (world size 1).
    """
    info = detect_launch()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), info["local_rank"], False
    if info["world_size"] == 1:
        return 0, 1, 0, False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    backend = choose_backend(backend)
    if init_method is None:
        if info["launcher"] == "slurm":
            os.environ.setdefault("MASTER_PORT", "29500")
            if "MASTER_ADDR" not in os.environ:
                raise ConfigError(
                    "under srun, export MASTER_ADDR (the first host of the job, e.g. "
                    "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)) "
                    "before launching; see the cnn3d_lstm README")
        init_method = "env://"
    if backend == "nccl":
        torch.cuda.set_device(info["local_rank"])
    dist.init_process_group(backend, init_method=init_method, rank=info["rank"],
                            world_size=info["world_size"],
                            timeout=datetime.timedelta(seconds=float(timeout_s)))
    log.info("rank %d of %d joined the %s process group (%s)", info["rank"], info["world_size"],
             backend, info["launcher"])
    return info["rank"], info["world_size"], info["local_rank"], True


class Communicator:
    """The few collectives the trainer needs; all of them are no-ops on a single rank."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world_size = int(rank), int(world_size)
        self.backend = dist.get_backend() if world_size > 1 else "none"
        self.device = (torch.device("cuda", local_rank) if self.backend == "nccl"
                       else torch.device("cpu"))

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.device.type == "cpu" else t.to(self.device)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return t
        x = self._to(t)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x.cpu() if x is not t else t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.world_size == 1:
            return t
        x = self._to(t)
        dist.broadcast(x, src)
        return x.cpu() if x is not t else t

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """``(world_size, *t.shape)``."""
        if self.world_size == 1:
            return t.unsqueeze(0)
        x = self._to(t)
        out = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(out, x)
        return torch.stack(out).cpu()

    def all_gather_object(self, obj: Any) -> list:
        if self.world_size == 1:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src)
        return box[0]

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Give every rank ``src``'s values of ``tensors`` (one flat message)."""
        tensors = [t for t in tensors if t.numel()]
        if self.world_size == 1 or not tensors:
            return
        floats = [t for t in tensors if t.is_floating_point()]
        others = [t for t in tensors if not t.is_floating_point()]
        with torch.no_grad():
            if floats:
                flat = self.broadcast(torch.cat([t.detach().reshape(-1).double() for t in floats]),
                                      src)
                for t, part in zip(floats, flat.split([t.numel() for t in floats])):
                    t.copy_(part.view_as(t))
            for t in others:
                t.copy_(self.broadcast(t.detach().clone(), src))


def split_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    return n * rank // world_size, n * (rank + 1) // world_size


# Cost model of a rank's slice: each trace type in it costs one LSTM pass whose steps run a
# few small layers whatever the number of traces (PASS_STEP_COST per step), and each trace
# costs TRACE_COST more (reading it, its observation embedding, its share of the batched
# layers). Fitted to per-rank step times of 2-rank training on toy_tau_decay with a small 3-D
# CNN (about 0.9 ms per pass step and 7 ms per trace); only the ratio matters.
PASS_STEP_COST = 1.0
TRACE_COST = 8.0


def balanced_cuts(types: np.ndarray, lengths: np.ndarray, world_size: int) -> np.ndarray:
    """Boundaries ``(world_size + 1,)`` cutting traces sorted by type into contiguous slices
    of about equal cost (see :data:`PASS_STEP_COST`, :data:`TRACE_COST`), each slice holding
    at least one trace.

    Slices of different sizes are fine: the trainer weights each rank's gradient by its share
    of the global batch, so the global gradient does not depend on the cuts.
    """
    n = len(types)
    if world_size == 1:
        return np.array([0, n])
    cost = np.empty(n)
    starts = np.flatnonzero(np.r_[True, types[1:] != types[:-1]])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends):
        length = max(int(lengths[a]), 1)
        cost[a:b] = PASS_STEP_COST * length / (b - a) + TRACE_COST
    cumulative = np.cumsum(cost)
    targets = cumulative[-1] * np.arange(1, world_size) / world_size
    # the boundary whose prefix cost is nearest each target
    above = np.searchsorted(cumulative, targets, side="left") + 1
    prefix = np.r_[0.0, cumulative]
    below = above - 1
    nearer_below = (np.abs(prefix[below] - targets)
                    <= np.abs(prefix[np.minimum(above, n)] - targets))
    cuts = np.where(nearer_below, below, above)
    # at least one trace per rank, in order
    cuts = np.clip(cuts, np.arange(1, world_size), n - world_size + np.arange(1, world_size))
    cuts = np.maximum.accumulate(cuts)
    for i in range(1, len(cuts)):
        cuts[i] = max(cuts[i], cuts[i - 1] + 1)
    return np.r_[0, cuts, n]


# ----------------------------------------------------------------------------------------------
# Data sources: each rank's slice of a global minibatch that does not depend on the world size


class ShardedDatasetSource(DatasetSource):
    """Rank ``rank``'s slice of every global minibatch of a trace dataset.

    Epoch ``e`` visits the training traces in the order ``chunk_rng(seed, e).permutation``
    (as the core's :class:`~etalumis_core.nn.DatasetSource`); the global batch of a step is the
    next ``batch_size`` of them. Those traces are sorted by trace type (stable) and dealt out
    in contiguous slices of about equal cost (not necessarily of equal size), so each rank
    sees few trace types and no rank waits long for another. With ``bucket_window`` W > 1 the
    traces of W consecutive global batches are sorted together and cut into W batches (visited
    in a shuffled order): most batches then hold a single trace type, at the price of batches
    that are no longer i.i.d. W = 1 leaves each global batch's content, hence its gradient,
    unchanged.
    """

    def __init__(self, dataset: Any, seed: int = 0, validation_size: int = 0, rank: int = 0,
                 num_ranks: int = 1, bucket_window: int = 1) -> None:
        super().__init__(dataset, seed, validation_size, rank, num_ranks)
        if int(bucket_window) < 1:
            raise ConfigError(f"bucket_window must be at least 1, got {bucket_window}")
        self.bucket_window = int(bucket_window)
        self._window: tuple[tuple, np.ndarray] | None = None
        self._type_lengths = np.array([len(t) for t in self.dataset.trace_types] or [0])

    def shard(self, rank: int, num_ranks: int) -> "ShardedDatasetSource":
        return ShardedDatasetSource(self.dataset, self.seed, self.validation_size, rank,
                                    num_ranks, self.bucket_window)

    def global_ids(self, step: int, batch_size: int) -> np.ndarray:
        """Trace ids of the step's global batch, sorted by trace type."""
        from etalumis_core.seeding import chunk_rng

        steps_per_epoch = max(self.num_train // batch_size, 1)
        epoch, pos = divmod(step, steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, chunk_rng(self.seed, epoch).permutation(self.num_train))
        perm = self._epoch[1]
        w = self.bucket_window
        first = (pos // w) * w
        count = min(w, steps_per_epoch - first)
        key = (epoch, first, batch_size)
        if self._window is None or self._window[0] != key:
            ids = perm[np.arange(first * batch_size, (first + count) * batch_size) % self.num_train]
            ids = ids[np.argsort(self.dataset.trace_type[ids], kind="stable")]
            batches = ids.reshape(count, batch_size)
            if count > 1:
                rng = np.random.Generator(np.random.PCG64(
                    np.random.SeedSequence(self.seed, spawn_key=(epoch, first, 1))))
                batches = batches[rng.permutation(count)]
            self._window = (key, batches)
        return self._window[1][pos - first]

    def batch(self, step: int, batch_size: int) -> Batch:
        """This rank's slice of the global batch of ``batch_size`` traces (cut so that ranks
        have about the same work, see :func:`balanced_cuts`)."""
        ids = self.global_ids(step, batch_size)
        types = self.dataset.trace_type[ids]
        cuts = balanced_cuts(types, self._type_lengths[types], self.num_ranks)
        return self.dataset.batch(ids[cuts[self.rank]:cuts[self.rank + 1]])

    def describe(self) -> dict:
        return {**super().describe(), "bucket_window": self.bucket_window}


class ShardedOnlineSource:
    """Fresh traces, each rank simulating its own slice of every global minibatch.

    Trace ``i`` of step ``s``'s global batch is drawn with ``chunk_rng(seed, s * batch_size +
    i)``: seeds differ from rank to rank (each rank draws different traces) and the global
    batch is the same whatever the number of ranks. A rank's traces are grouped by trace type
    into one LSTM pass per type.
    """

    def __init__(self, simulator: Any, seed: int = 0, prior_inflation: float | None = None,
                 rank: int = 0, num_ranks: int = 1) -> None:
        from etalumis_core.data.dataset import check_inflation
        from etalumis_core.simulator import SimulatorSpec, as_simulator

        self.spec = simulator
        self.simulator = (simulator.build() if isinstance(simulator, SimulatorSpec)
                          else as_simulator(simulator))
        self.name = getattr(simulator, "name", self.simulator.name)
        self.seed = int(seed)
        self.prior_inflation = check_inflation(prior_inflation)
        self.rank, self.num_ranks = int(rank), int(num_ranks)

    def shard(self, rank: int, num_ranks: int) -> "ShardedOnlineSource":
        return ShardedOnlineSource(self.spec, self.seed, self.prior_inflation, rank, num_ranks)

    def traces(self, keys: Sequence[int]) -> list:
        from etalumis_core.data.dataset import make_generation_controller
        from etalumis_core.seeding import chunk_rng
        from etalumis_core.simulator import run_trace

        return [run_trace(self.simulator,
                          make_generation_controller(chunk_rng(self.seed, int(k)),
                                                     self.prior_inflation), 3)
                for k in keys]

    def batch(self, step: int, batch_size: int) -> Batch:
        a, b = split_range(batch_size, self.rank, self.num_ranks)
        keys = [step * batch_size + i for i in range(a, b)]
        return collate([record_from_trace(t, k) for k, t in zip(keys, self.traces(keys))])

    def validation_batch(self, size: int) -> Batch:
        keys = [_VALIDATION_KEY + i for i in range(size)]
        return collate([record_from_trace(t, -1 - i) for i, t in enumerate(self.traces(keys))])

    def prescan_traces(self, count: int) -> list:
        """This rank's share of ``count`` pre-scan traces (the trainer merges the shares)."""
        a, b = split_range(count, self.rank, self.num_ranks)
        return self.traces([_PRESCAN_KEY + i for i in range(a, b)])

    def describe(self) -> dict:
        return {"kind": "online", "simulator": self.name, "seed": self.seed,
                "prior_inflation": self.prior_inflation}


def sharded_source(data: Any, seed: int, prior_inflation: float | None, validation_size: int,
                   bucket_window: int, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s source from a simulator, a dataset (or its path), or a source."""
    from etalumis_core.data.dataset import TraceDataset

    if isinstance(data, (ShardedDatasetSource, ShardedOnlineSource)):
        return data.shard(rank, world_size)
    if isinstance(data, DatasetSource):
        return ShardedDatasetSource(data.dataset, data.seed, data.validation_size, rank,
                                    world_size, bucket_window)
    if isinstance(data, OnlineSource):
        return ShardedOnlineSource(data.spec, data.seed, data.prior_inflation, rank, world_size)
    if isinstance(data, TraceDataset) or (isinstance(data, (str, os.PathLike))
                                          and (Path(data) / "manifest.json").exists()):
        return ShardedDatasetSource(data, seed, validation_size, rank, world_size, bucket_window)
    if hasattr(data, "batch") and hasattr(data, "validation_batch"):
        raise ConfigError(f"the distributed trainer cannot shard a {type(data).__name__}: give "
                          f"a simulator, a TraceDataset (or its path), or a Sharded*Source")
    return ShardedOnlineSource(data, seed, prior_inflation, rank, world_size)


# ----------------------------------------------------------------------------------------------
# Learning rate


def scaled_lr(step: int, total_steps: int, lr: float, lr_end: float, power: float,
              batch_size: int, base_batch_size: int | None, scaling: str = "linear",
              warmup_steps: int = 0) -> float:
    """The learning rate of ``step`` for a global batch of ``batch_size``.

    ``lr`` is the rate for ``base_batch_size`` traces; ``scaling`` ``linear`` multiplies it by
    ``batch_size / base_batch_size`` (``sqrt``: by the square root; ``none``: keeps it). The
    scaled rate is reached linearly from ``lr`` over ``warmup_steps``, then decays polynomially
    (``power``; 0 keeps it) to ``lr_end`` over the remaining steps.
    """
    if scaling not in ("linear", "sqrt", "none"):
        raise ConfigError(f"lr_scaling must be linear, sqrt or none, got {scaling!r}")
    ratio = batch_size / base_batch_size if base_batch_size else 1.0
    factor = ratio if scaling == "linear" else math.sqrt(ratio) if scaling == "sqrt" else 1.0
    peak = lr * factor
    if warmup_steps > 0 and step < warmup_steps:
        return lr + (peak - lr) * step / warmup_steps
    return polynomial_decay(step - warmup_steps, total_steps - warmup_steps, peak, lr_end, power)


# ----------------------------------------------------------------------------------------------
# The trainer


class DistributedTrainer(Trainer):
    """Data-parallel training (registered as ``distributed``); see the module docstring.

    ``batch_size`` of :meth:`train` is the *global* minibatch (split over the ranks). Options
    beyond the ``single`` trainer's: ``backend`` (``auto``: nccl with CUDA, else gloo),
    ``init_method`` (default ``env://``, as torchrun and the SLURM recipe set it),
    ``timeout_s``, ``lr_scaling`` (``linear``/``sqrt``/``none``) with ``base_batch_size`` (the
    batch size ``lr`` is meant for; None: no scaling) and ``warmup_steps``, ``bucket_window``
    (global batches sorted by trace type together; 1 keeps batches i.i.d.).
    """

    name = "distributed"
    defaults: dict[str, Any] = dict(
        Trainer.defaults, backend="auto", init_method=None, timeout_s=1800.0,
        lr_scaling="linear", base_batch_size=None, warmup_steps=0, bucket_window=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.comm = Communicator()
        self._local_size = 0
        self._global_size = 0

    # -- collectives around the core's step ----------------------------------------------------
    def grow(self, batch: Batch) -> None:
        """Layers for addresses new to *any* rank, built on every rank in sorted order and
        initialised from rank 0. Also agrees on this step's global batch size."""
        comm = self.comm
        net = self.network
        local_new: dict[str, tuple] = {}
        for address, info in batch.sites().items():
            i = net.address_ids.get(address)
            # Known finite addresses whose support grew go through ensure_sites too, so that
            # every rank raises the same error instead of one rank hanging.
            if i is None or (info[1] == "finite" and info[3] > net.sites[i][4]):
                local_new[address] = info
        counts = comm.all_reduce_sum(torch.tensor([float(batch.size), float(len(local_new))],
                                                  dtype=torch.float64))
        self._local_size = batch.size
        self._global_size = int(counts[0])
        if counts[1] == 0:
            return
        merged: dict[str, tuple] = {}
        for part in comm.all_gather_object(local_new):
            for address, info in part.items():
                old = merged.get(address)
                if old is None or info[3] > old[3]:
                    merged[address] = info
        new = [a for a in sorted(merged) if a not in net.address_ids]
        params = net.ensure_sites([(a, *merged[a]) for a in sorted(merged)])
        comm.broadcast_tensors(params)
        if params:
            self.add_param_group([n for a in new for n in net.site_parameter_names(a)])

    def after_backward(self) -> None:
        """Sum every parameter's weighted gradient over ranks (None counts as zeros); a
        parameter no rank touched goes back to ``grad=None``, as in a single-process step.

        Two messages: which parameters any rank touched (one flag each), then the gradients
        of those only, in one flat buffer. Most per-address layers are idle in a given step
        (a minibatch meets a fraction of the addresses), so the second message is much
        smaller than the network.
        """
        comm = self.comm
        if comm.world_size == 1:
            return
        params = [p for p in self.network.parameters() if p.requires_grad]
        flags = comm.all_reduce_sum(torch.tensor([p.grad is not None for p in params],
                                                 dtype=torch.float32))
        active = [p for p, f in zip(params, flags.tolist()) if f > 0]
        if not active:
            return
        weight = self._local_size / max(self._global_size, 1)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in active])
        flat.mul_(weight)
        flat = comm.all_reduce_sum(flat)
        for p, g in zip(active, flat.split([p.numel() for p in active])):
            p.grad = g.view_as(p)

    def reduce_loss(self, loss: float) -> float:
        """Average the loss over the global batch; gather per-rank throughput; stop every rank
        together at ``max_seconds``."""
        now = time.perf_counter()
        dt = now - self._last_time
        self._last_time = now
        local = torch.tensor([loss * self._local_size, float(self._local_size), dt,
                              now - self._started], dtype=torch.float64)
        rows = self.comm.all_gather(local)
        n = float(rows[:, 1].sum())
        global_loss = float(rows[:, 0].sum()) / max(n, 1.0)
        # traces_trained counts the global batch (the core's loop adds the local one).
        self.network.traces_trained += int(n) - self._local_size
        self._window.append((n, rows[:, 1].numpy().copy(), rows[:, 2].numpy().copy()))
        done, per_rank = self._rates()
        self._bar.update(int(n))
        self._bar.show(loss=global_loss, lr=self.lr_at(self.step - 1),
                       traces_s=done)
        if self.comm.rank == 0 and (self.step % self.options["log_interval"] == 0
                                    or self.step == self.total_steps):
            lr = self.lr_at(self.step - 1)
            log.info("step %d: loss %.5g, lr %.3g, %.1f traces/s global, per rank %s",
                     self.step, global_loss, lr, done,
                     " ".join(f"{r:.1f}" for r in per_rank))
            self._throughput_rows.append([self.step, self.step * self.batch_size, global_loss,
                                          lr, done, " ".join(f"{r:.2f}" for r in per_rank)])
        max_seconds = self._max_seconds
        if max_seconds and float(rows[0, 3]) > max_seconds and self.step < self.total_steps:
            log.info("stopping after %.1f s (max_seconds) at step %d", float(rows[0, 3]),
                     self.step)
            self.total_steps = self.step   # the core's loop then checkpoints and ends
        return global_loss

    def _rates(self) -> tuple[float, list[float]]:
        """Global traces/s (a step lasts as long as its slowest rank) and per-rank traces/s,
        over the last ``log_interval`` steps."""
        n = sum(w[0] for w in self._window)
        slowest = sum(float(w[2].max()) for w in self._window)
        local_n = np.sum([w[1] for w in self._window], axis=0)
        local_t = np.sum([w[2] for w in self._window], axis=0)
        return n / max(slowest, 1e-12), (local_n / np.maximum(local_t, 1e-12)).tolist()

    # -- learning rate -------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.options
        return scaled_lr(step, self.total_steps, o["lr"], o["lr_end"], o["lr_decay_power"],
                         self.batch_size, o["base_batch_size"], o["lr_scaling"],
                         int(o["warmup_steps"]))

    # -- rank 0 writes -------------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        return self.comm.rank == 0

    def _write_csv(self, out: Path, *args: Any, **kwargs: Any) -> None:
        super()._write_csv(out, *args, **kwargs)
        if self.is_writer:
            self._write_throughput(out)

    def _write_throughput(self, out: Path) -> None:
        if not self._throughput_rows:
            return
        path = out / THROUGHPUT_CSV
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "traces", "loss", "lr", "global_traces_per_s",
                                 "per_rank_traces_per_s"])
            writer.writerows(self._throughput_rows)
        self._throughput_rows = []

    # -- the run -------------------------------------------------------------------------------
    def train(self, network: ProposalNetwork, data: Any, output_dir: str | os.PathLike,
              num_traces: int | None = None, steps: int | None = None, batch_size: int = 64,
              resume: bool = True, **options: Any) -> TrainingResult:
        """Train on every rank of the process group (joined here from the launcher's
        environment unless one exists already). ``batch_size`` is the global minibatch;
        ``data`` a simulator (online), a dataset or its path, or a source. Every rank must call
        this with the same arguments; all ranks return the same trained network."""
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ConfigError(f"unknown trainer option(s) {sorted(unknown)}")
        self.options = {**self.options, **options}
        o = self.options
        if o["num_threads"]:
            torch.set_num_threads(int(o["num_threads"]))
        rank, world, local_rank, created = init_distributed(o["backend"], o["init_method"],
                                                            o["timeout_s"])
        self.comm = comm = Communicator(rank, world, local_rank)
        if batch_size < world:
            raise ConfigError(f"the global batch_size ({batch_size}) must be at least the "
                              f"number of ranks ({world})")
        try:
            source = sharded_source(data, o["seed"], o["prior_inflation"], o["validation_size"],
                                    o["bucket_window"], rank, world)
            checkpoint = Path(output_dir) / CHECKPOINT
            resuming = comm.broadcast_object(bool(resume and checkpoint.exists()))
            if not resuming:
                self._prepare(network, source, batch_size)
            # The core's loop must neither pre-scan per rank, nor stop one rank alone on a
            # timer, nor draw a progress bar of local counts: those are handled here.
            saved = {k: o[k] for k in ("prescan_traces", "max_seconds", "progress")}
            self._max_seconds = o["max_seconds"]
            self._window: deque = deque(maxlen=max(int(o["log_interval"]), 1))
            self._throughput_rows: list[list] = []
            if rank == 0 and not resuming:
                Path(output_dir).mkdir(parents=True, exist_ok=True)
                (Path(output_dir) / THROUGHPUT_CSV).unlink(missing_ok=True)
            total = int(steps) if steps is not None else (
                math.ceil(num_traces / batch_size) if num_traces is not None else 0)
            with Progress(total * batch_size, f"training ({world} ranks)",
                          o["progress"] if rank == 0 else False) as bar:
                self._bar = bar
                self._started = self._last_time = time.perf_counter()
                result = super().train(network, source, output_dir, num_traces=num_traces,
                                       steps=steps, batch_size=batch_size, resume=resuming,
                                       prescan_traces=0, max_seconds=None, progress=False)
            self.options.update(saved)
            if rank == 0:
                self._write_throughput(Path(output_dir))
            return result
        finally:
            if created:
                dist.destroy_process_group()

    def _prepare(self, network: ProposalNetwork, source: Any, batch_size: int) -> None:
        """Before a fresh run: identical layers on every rank (pre-scan), rank 0's initial
        weights everywhere, and observation statistics of the whole first global batch."""
        comm = self.comm
        o = self.options
        if isinstance(source, ShardedDatasetSource):
            network.prescan(source.dataset)
        elif o["prescan_traces"] and hasattr(source, "prescan_traces"):
            mine = Batch([])
            traces = source.prescan_traces(int(o["prescan_traces"]))
            if traces:
                mine = collate([record_from_trace(t) for t in traces])
            merged: dict[str, tuple] = {}
            for part in comm.all_gather_object(mine.sites()):
                for address, info in part.items():
                    old = merged.get(address)
                    if old is None or info[3] > old[3]:
                        merged[address] = info
            network.ensure_sites([(a, *merged[a]) for a in sorted(merged)])
        sizes = comm.all_gather_object(len(network.sites))
        if len(set(sizes)) != 1:
            raise ConfigError(f"ranks hold different numbers of address layers {sizes}: every "
                              f"rank must start from the same network")
        comm.broadcast_tensors(list(network.state_dict().values()))
        if not bool(network.normalizer_ready):
            self._fit_normalizer(network, source.batch(0, batch_size))

    def _fit_normalizer(self, network: ProposalNetwork, batch: Batch) -> None:
        """Each observation's mean and stddev over the global first batch (as the single
        trainer fits them on its first batch)."""
        names = list(network.observation_shapes)
        sums = []
        for n in names:
            x = [sb.observations[n].reshape(-1).astype(np.float64) for sb in batch.sub_batches]
            x = np.concatenate(x) if x else np.zeros(0)
            sums += [x.size, x.sum(), np.square(x).sum()]
        total = self.comm.all_reduce_sum(torch.tensor(sums, dtype=torch.float64)).numpy()
        means, stds = [], []
        for j in range(len(names)):
            count, s, s2 = total[3 * j:3 * j + 3]
            mean = s / count if count else 0.0
            var = max(s2 / count - mean * mean, 0.0) if count else 1.0
            std = math.sqrt(var)
            means.append(mean)
            stds.append(std if std > 1e-8 else 1.0)
        network.observation_mean.copy_(torch.tensor(means))
        network.observation_std.copy_(torch.tensor(stds))
        network.normalizer_ready.fill_(True)


# ----------------------------------------------------------------------------------------------
# A launcher-friendly entry point (torchrun -m / srun python -m)


def main(argv: Sequence[str] | None = None) -> None:
    """``torchrun --nproc_per_node=N -m etalumis_cnn3d_lstm.distributed --simulator NAME
    --output DIR [--dataset DIR] ...``: distributed training without Hydra."""
    import argparse
    import json

    from etalumis_core.plugins import load_plugins
    from etalumis_core.simulator import SimulatorSpec

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--simulator", required=True, help="registered simulator name")
    p.add_argument("--simulator-options", default="{}", help="JSON keyword arguments")
    p.add_argument("--dataset", default=None, help="trace dataset directory (default: online)")
    p.add_argument("--output", required=True)
    p.add_argument("--proposal", default="cnn3d_lstm")
    p.add_argument("--proposal-options", default="{}", help="JSON embedding options")
    p.add_argument("--network-options", default="{}",
                   help="JSON ProposalNetwork options (embedding_dim, lstm_dim, ...)")
    p.add_argument("--trainer-options", default="{}", help="JSON DistributedTrainer options")
    p.add_argument("--num-traces", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64, help="global minibatch")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    plugins = load_plugins()
    spec = SimulatorSpec(plugins.simulators.get(args.simulator).factory,
                         json.loads(args.simulator_options), name=args.simulator)
    trainer = DistributedTrainer(**json.loads(args.trainer_options))
    options = dict(embedding=args.proposal, embedding_options=json.loads(args.proposal_options),
                   plugins=plugins, **json.loads(args.network_options))
    if args.dataset:
        from etalumis_core.data.dataset import TraceDataset

        data: Any = TraceDataset(args.dataset)
        network = ProposalNetwork(data.observation_shapes, simulator=data.simulator, **options)
    else:
        data = spec
        network = ProposalNetwork.for_simulator(spec, **options)
    steps = args.steps if args.steps is not None or args.num_traces is not None else 1000
    trainer.train(network, data, args.output, num_traces=args.num_traces, steps=steps,
                  batch_size=args.batch_size)


if __name__ == "__main__":
    main()
