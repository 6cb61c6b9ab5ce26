"""Data-parallel training of proposal networks over ``torch.distributed``.

Registered as the ``distributed`` trainer; it trains any registered proposal architecture.
Every process (a *rank*) holds a full copy of the network. The core's
:class:`~etalumis_core.nn.Trainer` owns the loop and gives each rank its slice of every global
minibatch (a function of the seed and the step alone, never of the number of ranks); this
trainer supplies the extension points that make the ranks one run:

* :meth:`DistributedTrainer.prepare` joins the process group (torchrun or SLURM environment);
* the collectives (all-reduce, all-gather, broadcast) through which the loop agrees on new
  layers, rank 0's initial weights, the observation normaliser, the loss and when to stop;
* :meth:`DistributedTrainer.reduce_gradients`: every parameter's gradient, weighted by the
  rank's share of the global batch, summed over ranks in one flat buffer (a parameter no rank
  touched keeps ``grad=None``, exactly as in a single-process step on the global batch);
* :meth:`DistributedTrainer.lr_at`: the linear scaling rule with warm-up for large global
  batches (Goyal et al. 2017), with LARC (``larc=true``) keeping each layer's step small;
* per-rank throughput in ``throughput.csv``.

So a run on R ranks follows the single-process run on the same global batches up to
floating-point rounding, and a checkpoint (written by rank 0, holding no per-rank state)
resumes on any number of ranks. Backend: ``nccl`` when CUDA is available (the network then
trains on ``cuda:LOCAL_RANK``), ``gloo`` otherwise.
"""

from __future__ import annotations

import csv
import datetime
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist

from etalumis_core import ConfigError
from etalumis_core.nn import Trainer, polynomial_decay

log = logging.getLogger(__name__)

THROUGHPUT_CSV = "throughput.csv"


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

    ``batch_size`` of :meth:`train` is the *global* minibatch (split over the ranks). Every
    rank calls :meth:`train` with the same arguments; all ranks end with the same network.
    Options beyond the ``single`` trainer's: ``backend`` (``auto``: nccl with CUDA, else
    gloo), ``init_method`` (default ``env://``, as torchrun and the SLURM recipe set it),
    ``timeout_s``, ``lr_scaling`` (``linear``/``sqrt``/``none``) with ``base_batch_size`` (the
    batch size ``lr`` is meant for; None: no scaling) and ``warmup_steps``. Online training
    draws every trace from its own seed (``traces_per_seed=1``), so that the global batch is
    the same on any number of ranks.
    """

    name = "distributed"
    defaults: dict[str, Any] = dict(
        Trainer.defaults, traces_per_seed=1, backend="auto", init_method=None,
        timeout_s=1800.0, lr_scaling="linear", base_batch_size=None, warmup_steps=0)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.local_rank = 0
        self._created = False

    # -- the process group ---------------------------------------------------------------------
    def prepare(self) -> None:
        o = self.options
        self.rank, self.world_size, self.local_rank, self._created = init_distributed(
            o["backend"], o["init_method"], o["timeout_s"])
        self._last_time = time.perf_counter()
        self._throughput: list[tuple[float, list[float], list[float]]] = []
        self._throughput_written = False

    def finish(self) -> None:
        if self._created:
            dist.destroy_process_group()
            self._created = False

    @property
    def device(self) -> torch.device:
        if self.options["device"]:
            return torch.device(self.options["device"])
        if self.world_size > 1 and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return super().device

    @property
    def _comm_device(self) -> torch.device:
        """Where collectives' tensors must be: the rank's GPU for NCCL, else the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    # -- collectives ---------------------------------------------------------------------------
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        x = tensor.to(self._comm_device)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x.to(tensor.device)

    def all_gather_object(self, obj: Any) -> list:
        if self.world_size == 1:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` everywhere, floating-point ones in one message."""
        tensors = [t for t in tensors if t.numel()]
        if self.world_size == 1 or not tensors:
            return
        floats = [t for t in tensors if t.is_floating_point()]
        with torch.no_grad():
            if floats:
                flat = torch.cat([t.detach().reshape(-1).double() for t in floats])
                flat = flat.to(self._comm_device)
                dist.broadcast(flat, 0)
                for t, part in zip(floats, flat.split([t.numel() for t in floats])):
                    t.copy_(part.view_as(t))
            for t in tensors:
                if not t.is_floating_point():
                    x = t.detach().clone().to(self._comm_device)
                    dist.broadcast(x, 0)
                    t.copy_(x)

    def reduce_gradients(self) -> None:
        """Sum every parameter's weighted gradient over ranks (None counts as zeros); a
        parameter no rank touched goes back to ``grad=None``, as in a single-process step.

        Two messages: which parameters any rank touched (one flag each), then the gradients
        of those only, in one flat buffer. Most per-address layers are idle in a given step
        (a minibatch meets a fraction of the addresses), so the second message is much
        smaller than the network.
        """
        if self.world_size == 1:
            return
        params = [p for p in self.network.parameters() if p.requires_grad]
        flags = self.all_reduce(torch.tensor([p.grad is not None for p in params],
                                             dtype=torch.float32))
        active = [p for p, f in zip(params, flags.tolist()) if f > 0]
        if not active:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in active])
        flat.mul_(self.local_batch_size / max(self.global_batch_size, 1))
        flat = self.all_reduce(flat)
        for p, g in zip(active, flat.split([p.numel() for p in active])):
            p.grad = g.view_as(p)

    def reduce_loss(self, loss: float) -> float:
        """The loss over the global batch; each rank's step time and traces go along, for
        the throughput log."""
        now = time.perf_counter()
        dt, self._last_time = now - self._last_time, now
        n = float(self.local_batch_size)
        mine = torch.tensor([loss * n, n, dt], dtype=torch.float64)
        rows = mine[None]
        if self.world_size > 1:
            x = mine.to(self._comm_device)
            parts = [torch.empty_like(x) for _ in range(self.world_size)]
            dist.all_gather(parts, x)
            rows = torch.stack(parts).cpu()
        global_loss = float(rows[:, 0].sum() / rows[:, 1].sum())
        self._throughput.append((float(rows[:, 2].max()), rows[:, 1].tolist(),
                                 rows[:, 2].tolist()))
        if self.step % self.options["log_interval"] == 0 or self.step == self.total_steps:
            self._log_throughput(global_loss)
        return global_loss

    def _log_throughput(self, loss: float) -> None:
        """Global traces/s (a step lasts as long as its slowest rank) and per-rank traces/s
        over the steps since the last row, logged and appended to ``throughput.csv``."""
        steps, self._throughput = self._throughput, []
        traces = sum(sum(n) for _, n, _ in steps)
        rate = traces / max(sum(slowest for slowest, _, _ in steps), 1e-12)
        per_rank = [sum(s[1][r] for s in steps) / max(sum(s[2][r] for s in steps), 1e-12)
                    for r in range(len(steps[0][1]))]
        lr = self.lr_at(self.step - 1)
        if not self.is_writer:
            return
        log.info("step %d: loss %.5g, lr %.3g, %.1f traces/s global, per rank %s", self.step,
                 loss, lr, rate, " ".join(f"{r:.1f}" for r in per_rank))
        path = Path(self.output_dir) / THROUGHPUT_CSV
        # A fresh run starts the file; a resumed one continues it.
        new = not (self.resumed_from or self._throughput_written) or not path.exists()
        self._throughput_written = True
        with open(path, "w" if new else "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "traces", "loss", "lr", "global_traces_per_s",
                                 "per_rank_traces_per_s"])
            writer.writerow([self.step, self.step * self.batch_size, loss, lr, rate,
                             " ".join(f"{r:.2f}" for r in per_rank)])

    # -- learning rate -------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.options
        return scaled_lr(step, self.total_steps, o["lr"], o["lr_end"], o["lr_decay_power"],
                         self.batch_size, o["base_batch_size"], o["lr_scaling"],
                         int(o["warmup_steps"]))
