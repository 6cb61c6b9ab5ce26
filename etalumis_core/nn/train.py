"""Training proposal networks: online (fresh traces) or offline (a trace dataset).

:class:`Trainer` owns the loop: pre-scan, the observation normaliser, checkpoints (an exact
resume), validation, logs, the progress bar. A trainer plugin (data-parallel, GPU) overrides its
named extension points (:meth:`Trainer.prepare`, the collectives, :meth:`Trainer.reduce_gradients`,
:meth:`Trainer.should_stop`, :attr:`Trainer.is_writer`, :attr:`Trainer.device`,
:meth:`Trainer.lr_at`); with the single-process answers the collectives are identities. Data
comes from the sources of :mod:`etalumis_core.nn.sources`, which give each rank its slice of a
global batch that does not depend on the number of ranks.

Output directory: ``checkpoint.pt`` (weights, optimizer state, torch RNG state; ``torch.save``
of tensors and a JSON header, read with ``weights_only=True``), ``network.pt`` (the final
network), ``training_log.csv`` and ``loss.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..data.hdf5 import atomic_path
from ..data.records import Batch
from ..errors import ConfigError
from ..progress import Progress
from .network import ProposalNetwork
from .sources import as_source

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
NETWORK = "network.pt"
LOG_CSV = "training_log.csv"
LOSS_PNG = "loss.png"


# ----------------------------------------------------------------------------------------------
# Optimisation


class LARC:
    """Layer-wise adaptive rate clipping (You et al. 2017, as in NVIDIA Apex) around an
    optimizer: each parameter's step is scaled by ``min(1, trust * |w| / (|g| + wd |w|) / lr)``
    (``clip=True``) or by the local rate itself (``clip=False``), so no layer's update is large
    relative to its weights."""

    def __init__(self, optimizer: torch.optim.Optimizer, trust_coefficient: float = 0.02,
                 clip: bool = True, eps: float = 1e-8) -> None:
        self.optimizer = optimizer
        self.trust_coefficient = float(trust_coefficient)
        self.clip = bool(clip)
        self.eps = float(eps)

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def add_param_group(self, group: dict) -> None:
        self.optimizer.add_param_group(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    @torch.no_grad()
    def step(self) -> None:
        saved_wd = []
        for group in self.optimizer.param_groups:
            wd = group.get("weight_decay", 0.0)
            saved_wd.append(wd)
            group["weight_decay"] = 0.0   # folded into the gradient below
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(p.grad)
                if w_norm > 0 and g_norm > 0:
                    rate = self.trust_coefficient * w_norm / (g_norm + wd * w_norm + self.eps)
                    if self.clip:
                        rate = torch.clamp(rate / group["lr"], max=1.0)
                    p.grad.add_(p, alpha=wd).mul_(rate)
                elif wd:
                    p.grad.add_(p, alpha=wd)
        self.optimizer.step()
        for group, wd in zip(self.optimizer.param_groups, saved_wd):
            group["weight_decay"] = wd


def polynomial_decay(step: int, total_steps: int, lr: float, lr_end: float, power: float) -> float:
    """``lr_end + (lr - lr_end) * (1 - step/total)^power`` (constant after ``total``)."""
    if power == 0 or total_steps <= 0:
        return lr
    frac = min(step, total_steps) / total_steps
    return lr_end + (lr - lr_end) * (1.0 - frac) ** power


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
                   weight_decay: float, larc: bool, larc_trust_coefficient: float) -> Any:
    params = list(params)
    if name == "adam":
        opt: Any = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
    elif name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                              foreach=True)
    else:
        raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {name!r}")
    return LARC(opt, larc_trust_coefficient) if larc else opt


# ----------------------------------------------------------------------------------------------
# The trainer


class TrainingResult:
    """What a training run produced: the network, the loss history and where files are."""

    def __init__(self, network: ProposalNetwork, output_dir: Path, steps: int, traces: int,
                 losses: list[float], validation: list[tuple[int, float]], wall_time_s: float,
                 resumed_from: int) -> None:
        self.network = network
        self.output_dir = output_dir
        self.steps = steps
        self.traces = traces
        self.losses = losses
        self.validation = validation
        self.wall_time_s = wall_time_s
        self.resumed_from = resumed_from

    @property
    def network_path(self) -> Path:
        return self.output_dir / NETWORK

    @property
    def traces_per_second(self) -> float:
        done = self.traces - self.resumed_from
        return done / max(self.wall_time_s, 1e-12)

    def __repr__(self) -> str:
        last = self.losses[-1] if self.losses else float("nan")
        return f"TrainingResult({self.steps} steps, {self.traces} traces, loss {last:.4g})"


class Trainer:
    """The training loop (registered as ``single``); a trainer plugin overrides its extension
    points, never the loop.

    Options (constructor defaults, overridable per :meth:`train` call): ``optimizer``
    (``adam``/``sgd``), ``lr``, ``lr_end``, ``lr_decay_power`` (polynomial decay over the run;
    0 keeps ``lr``), ``momentum``, ``weight_decay``, ``larc`` and ``larc_trust_coefficient``,
    ``seed`` (data and initialisation), ``prior_inflation`` (online), ``prescan_traces``
    (online: build layers for the addresses of this many traces first), ``traces_per_seed``
    (online, see :class:`OnlineSource`), ``data_workers`` (online: simulator worker processes
    that draw the next batches while the network trains; the same batches as without),
    ``bucket_window`` (dataset, see
    :class:`DatasetSource`), ``validation_size``/``validation_interval``,
    ``checkpoint_interval`` (steps), ``log_interval`` (steps per CSV row), ``max_seconds``
    (stop early), ``num_threads`` (torch CPU threads), ``device`` (None: CUDA where it
    exists), ``progress`` and ``plot``.

    Extension points, each a no-op or a single-process answer here:

    * :meth:`prepare` / :meth:`finish` around the run (join and leave a process group), which
      set :attr:`rank` and :attr:`world_size`; sources give each rank its slice of every
      global batch;
    * the collectives :meth:`all_reduce`, :meth:`all_gather_object` and
      :meth:`broadcast_tensors`, through which the loop agrees on new layers, initial
      weights, the observation normaliser, the global batch, the loss and when to stop;
    * :meth:`reduce_gradients` between backward and the optimizer step;
    * :meth:`should_stop`, :attr:`is_writer` (who writes files), :attr:`device` and
      :meth:`lr_at`.
    """

    name = "single"
    defaults: dict[str, Any] = dict(
        optimizer="adam", lr=1e-3, lr_end=1e-6, lr_decay_power=0.0, momentum=0.9,
        weight_decay=0.0, larc=False, larc_trust_coefficient=0.02, seed=0, prior_inflation=None,
        prescan_traces=0, traces_per_seed=None, data_workers=0, bucket_window=1,
        validation_size=0, validation_interval=100, checkpoint_interval=500, log_interval=10, max_seconds=None,
        num_threads=None, device=None, progress=None, plot=True)

    def __init__(self, **options: Any) -> None:
        self._check_options(options)
        self.options = {**self.defaults, **options}
        self.network: ProposalNetwork | None = None
        self.optimizer: Any = None
        self.source: Any = None
        self.rank, self.world_size = 0, 1
        self.step = 0
        self.total_steps = 0
        self.batch_size = 0
        self.local_batch_size = 0
        self.global_batch_size = 0
        self.resumed_from = 0
        self.output_dir = Path(".")
        self.param_groups: list[list[str]] = []

    def _check_options(self, options: dict) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ConfigError(f"unknown trainer option(s) {sorted(unknown)}; known: "
                              f"{sorted(self.defaults)}")

    # -- extension points ----------------------------------------------------------------------
    def prepare(self) -> None:
        """First thing of a run: a distributed trainer joins its process group here and sets
        :attr:`rank` and :attr:`world_size`."""

    def finish(self) -> None:
        """Last thing of a run, also after an error (leave the process group)."""

    @property
    def device(self) -> torch.device:
        """Where the network trains: the ``device`` option, else CUDA where it exists."""
        if self.options["device"]:
            return torch.device(self.options["device"])
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files (network, checkpoints, logs, plots): rank 0."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over ranks."""
        return tensor

    def all_gather_object(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order."""
        return [obj]

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Give every rank rank 0's values of ``tensors`` (in place)."""

    def reduce_gradients(self) -> None:
        """Between backward and the optimizer step: a distributed trainer sums the gradients,
        weighted by each rank's share of the global batch, over ranks."""

    def should_stop(self, elapsed_s: float) -> bool:
        """Whether to end the run after this step (``max_seconds``); all ranks agree, so they
        stop at the same step."""
        limit = self.options["max_seconds"]
        if not limit:
            return False
        return float(self.all_reduce(torch.tensor([float(elapsed_s > limit)]))[0]) > 0

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (a distributed trainer adds scaling and warm-up)."""
        o = self.options
        return polynomial_decay(step, self.total_steps, o["lr"], o["lr_end"], o["lr_decay_power"])

    # -- per step ------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> float:
        """One optimisation step on this rank's slice of the global batch; returns the loss
        over the global batch."""
        self.local_batch_size = batch.size
        self.global_batch_size = self.grow(batch.sites(), batch.size)
        self.set_lr(self.current_lr())
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.network.loss(batch) if batch.sub_batches else None
        if loss is not None:
            loss.backward()
        self.reduce_gradients()
        self.optimizer.step()
        self.step += 1
        return self.reduce_loss(float(loss.detach()) if loss is not None else 0.0)

    def reduce_loss(self, loss: float) -> float:
        """The mean loss over the global batch (from each rank's mean over its slice)."""
        if self.world_size == 1:
            return loss
        total = self.all_reduce(torch.tensor([loss * self.local_batch_size,
                                              float(self.local_batch_size)], dtype=torch.float64))
        return float(total[0] / total[1])

    def grow(self, sites: dict[str, tuple], local_size: int = 0) -> int:
        """Layers for addresses new to *any* rank (``sites`` as :meth:`Batch.sites`), built on
        every rank in sorted order and initialised from rank 0; each group of new layers
        becomes an optimizer parameter group (earlier groups keep their state). Returns the
        sum of ``local_size`` over ranks (the global batch size)."""
        net = self.network
        new_here = {}
        for address, info in net.layer_sites((a, *i) for a, i in sites.items()).items():
            i = net.address_ids.get(address)
            # A known finite address whose support grew goes through ensure_sites too, so that
            # every rank raises the same error instead of one rank waiting for the others.
            if i is None or (info[1] == "finite" and info[3] > net.sites[i][4]):
                new_here[address] = info
        counts = self.all_reduce(torch.tensor([float(local_size), float(len(new_here))],
                                              dtype=torch.float64))
        if counts[1] > 0:
            merged: dict[str, tuple] = {}
            for part in self.all_gather_object(new_here):
                for address, info in part.items():
                    if address not in merged or info[3] > merged[address][3]:
                        merged[address] = info
            unknown = [a for a in sorted(merged) if a not in net.address_ids]
            params = net.ensure_sites([(a, *merged[a]) for a in sorted(merged)])
            self.broadcast_tensors(params)
            if params and self.optimizer is not None:
                self.add_param_group([n for a in unknown for n in net.site_parameter_names(a)])
        return int(counts[0])

    def add_param_group(self, names: list[str]) -> None:
        named = dict(self.network.named_parameters())
        self.optimizer.add_param_group({"params": [named[n] for n in names],
                                        "lr": self.current_lr()})
        self.param_groups.append(names)

    def current_lr(self) -> float:
        return self.lr_at(self.step)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def fit_normalizer(self, batch: Batch) -> None:
        """Each observation's mean and stddev over the whole global batch ``batch`` is a
        slice of."""
        self.network.set_normalizer(self.all_reduce(self.network.observation_moments(batch)))

    def validation_loss(self, batch: Batch) -> float:
        """Loss on held-out traces (trace types whose addresses all have layers)."""
        known = self.network.layer_id
        batch = Batch([sb for sb in batch.sub_batches
                       if all(known(a) is not None for a in sb.trace_type)])
        if not batch.sub_batches:
            return math.nan
        was_training = self.network.training
        self.network.eval()
        with torch.no_grad():
            loss = float(self.network.loss(batch))
        self.network.train(was_training)
        return loss

    # -- the loop ------------------------------------------------------------------------------
    def train(self, network: ProposalNetwork, data: Any, output_dir: str | os.PathLike,
              num_traces: int | None = None, steps: int | None = None, batch_size: int = 64,
              resume: bool = True, **options: Any) -> TrainingResult:
        """Train ``network`` on ``data`` (a simulator for online training, a dataset or its
        path, or a data source) for ``steps`` steps or ``num_traces`` traces of minibatches of
        ``batch_size`` (the global minibatch, over all ranks).

        With ``resume`` and a checkpoint in ``output_dir``, training continues from it exactly
        (same later batches, same optimizer state, same losses), on any number of ranks.
        """
        self._check_options(options)
        self.options = {**self.options, **options}
        o = self.options
        if (steps is None) == (num_traces is None):
            raise ConfigError("give exactly one of steps and num_traces")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if o["num_threads"]:
            torch.set_num_threads(int(o["num_threads"]))
        self.prepare()
        try:
            if batch_size < self.world_size:
                raise ConfigError(f"batch_size ({batch_size}) must be at least the number of "
                                  f"ranks ({self.world_size})")
            self.total_steps = (int(steps) if steps is not None
                                else math.ceil(num_traces / batch_size))
            self.batch_size = int(batch_size)
            source = as_source(data, o["seed"], o["prior_inflation"], o["validation_size"],
                               self.rank, self.world_size, o["traces_per_seed"],
                               o["bucket_window"], o["data_workers"])
            try:
                return self._run(network, source, Path(output_dir), resume)
            finally:
                if source is not data:
                    source.close()
        finally:
            self.finish()

    def _run(self, network: ProposalNetwork, source: Any, out: Path,
             resume: bool) -> TrainingResult:
        o = self.options
        out.mkdir(parents=True, exist_ok=True)
        self.output_dir = out
        self.network = network.to(self.device)
        self.source = source
        torch.manual_seed(o["seed"])
        self.step = 0
        self.param_groups = []
        self.optimizer = None
        losses: list[float] = []
        validation: list[tuple[int, float]] = []
        checkpoint = out / CHECKPOINT
        self.resumed_from = 0
        if self.all_gather_object(bool(resume and checkpoint.exists()))[0]:
            losses, validation = self.load_checkpoint(checkpoint)
            self.resumed_from = self.step * self.batch_size
            log.info("resuming training from step %d", self.step)
        else:
            if hasattr(source, "prescan_sites"):
                self.grow(source.prescan_sites(int(o["prescan_traces"])))
            # Every rank starts from rank 0's network (initial weights, layers of addresses).
            sizes = self.all_gather_object(len(network.sites))
            if len(set(sizes)) != 1:
                raise ConfigError(f"ranks hold different numbers of address layers {sizes}: "
                                  f"every rank must start from the same network")
            self.broadcast_tensors(list(network.state_dict().values()))
            self.optimizer = make_optimizer(o["optimizer"], network.parameters(), o["lr"],
                                            o["momentum"], o["weight_decay"], o["larc"],
                                            o["larc_trust_coefficient"])
            self.param_groups = [[n for n, _ in network.named_parameters()]]
        batch = None
        if not bool(network.normalizer_ready):
            batch = source.batch(self.step, self.batch_size)
            self.fit_normalizer(batch)
        validation_batch = None
        if o["validation_size"]:
            validation_batch = source.validation_batch(int(o["validation_size"]))
        self._write_csv(out, losses, validation, rewrite=True)
        network.train()
        started = time.perf_counter()
        pending: list[float] = []
        progress = o["progress"] if self.is_writer else False
        with Progress(self.total_steps * self.batch_size, "training", progress) as bar:
            bar.update(self.step * self.batch_size)
            while self.step < self.total_steps:
                if batch is None:
                    batch = source.batch(self.step, self.batch_size)
                loss = self.train_step(batch)
                batch = None
                losses.append(loss)
                network.traces_trained += self.global_batch_size
                pending.append(loss)
                bar.update(self.global_batch_size)
                bar.show(loss=float(np.mean(pending)), lr=self.lr_at(self.step - 1))
                if validation_batch is not None and self.step % o["validation_interval"] == 0:
                    validation.append((self.step, self.validation_loss(validation_batch)))
                stop = self.should_stop(time.perf_counter() - started)
                if stop:
                    log.info("stopping after %.1f s (max_seconds) at step %d",
                             time.perf_counter() - started, self.step)
                if self.step % o["log_interval"] == 0 or self.step == self.total_steps or stop:
                    self._write_csv(out, losses, validation, rows_since=len(pending))
                    pending = []
                if (self.step % o["checkpoint_interval"] == 0 or self.step == self.total_steps
                        or stop):
                    self.save_checkpoint(checkpoint, losses, validation)
                if stop:
                    break
        wall = time.perf_counter() - started
        network.to("cpu").eval()
        if self.is_writer:
            network.save(out / NETWORK)
            if o["plot"]:
                self.plot(out / LOSS_PNG, losses, validation)
        return TrainingResult(network, out, self.step, self.step * self.batch_size, losses,
                              validation, wall, self.resumed_from)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, path: Path, losses: list[float],
                        validation: list[tuple[int, float]]) -> None:
        if not self.is_writer:
            return
        header = {"format": "etalumis-training-checkpoint", "step": self.step,
                  "total_steps": self.total_steps, "batch_size": self.batch_size,
                  "options": {k: v for k, v in self.options.items()
                              if isinstance(v, (int, float, str, bool, type(None)))},
                  "network": self.network.header(), "param_groups": self.param_groups,
                  "losses": losses, "validation": validation,
                  "source": self.source.describe() if hasattr(self.source, "describe") else {}}
        with atomic_path(path) as tmp:
            torch.save({"header": json.dumps(header), "network": self.network.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state()}, tmp)

    def load_checkpoint(self, path: Path) -> tuple[list[float], list[tuple[int, float]]]:
        data = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(data["header"])
        if header.get("batch_size") != self.batch_size:
            raise ConfigError(f"checkpoint {path} was trained with batch size "
                              f"{header.get('batch_size')}, not {self.batch_size}")
        network = self.network
        network.load_weights(header["network"], data["network"])
        named = dict(network.named_parameters())
        groups = header["param_groups"]
        o = self.options
        self.optimizer = make_optimizer(o["optimizer"], [named[n] for n in groups[0]], o["lr"],
                                        o["momentum"], o["weight_decay"], o["larc"],
                                        o["larc_trust_coefficient"])
        for names in groups[1:]:
            self.optimizer.add_param_group({"params": [named[n] for n in names], "lr": o["lr"]})
        self.optimizer.load_state_dict(data["optimizer"])
        self.param_groups = groups
        torch.set_rng_state(data["torch_rng"])
        self.step = int(header["step"])
        return list(header["losses"]), [tuple(v) for v in header["validation"]]

    # -- logs ----------------------------------------------------------------------------------
    def _write_csv(self, out: Path, losses: list[float], validation: list[tuple[int, float]],
                   rewrite: bool = False, rows_since: int = 0) -> None:
        """One row per ``log_interval`` steps: mean training loss over the interval, the
        learning rate and the latest validation loss. Rewritten from the history on (re)start so
        that a resumed run's log equals the uninterrupted one's."""
        if not self.is_writer:
            return
        path = out / LOG_CSV
        interval = self.options["log_interval"]
        if rewrite:
            rows = []
            for end in range(interval, len(losses) + 1, interval):
                rows.append(self._row(end, losses[end - interval:end], validation))
            if len(losses) % interval:
                end = len(losses)
                rows.append(self._row(end, losses[end - end % interval:end], validation))
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", "traces", "loss", "lr", "validation_loss"])
                writer.writerows(rows)
            return
        end = len(losses)
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(self._row(end, losses[end - rows_since:end], validation))

    def _row(self, end: int, chunk: Sequence[float], validation: list[tuple[int, float]]) -> list:
        lr = self.lr_at(end - 1)
        val = [v for s, v in validation if s <= end]
        return [end, end * self.batch_size, repr(float(np.mean(chunk))), repr(lr),
                repr(val[-1]) if val else ""]

    def plot(self, path: Path, losses: list[float], validation: list[tuple[int, float]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        if losses:
            traces = np.arange(1, len(losses) + 1) * self.batch_size
            ax.plot(traces, losses, lw=0.6, alpha=0.5, label="training loss")
            window = max(len(losses) // 50, 1)
            if window > 1:
                smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
                ax.plot(traces[window - 1:], smooth, lw=1.5, label=f"training (mean of {window})")
        if validation:
            s, v = zip(*validation)
            ax.plot(np.asarray(s) * self.batch_size, v, "o-", ms=3, label="validation loss")
        ax.set_xlabel("traces")
        ax.set_ylabel("loss (−log q)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def train(network: ProposalNetwork, data: Any, output_dir: str | os.PathLike, **options: Any) -> TrainingResult:
    """Shorthand: ``Trainer().train(network, data, output_dir, **options)``."""
    train_args = {k: options.pop(k) for k in ("num_traces", "steps", "batch_size", "resume")
                  if k in options}
    return Trainer(**options).train(network, data, output_dir, **train_args)
