"""Training proposal networks: online (fresh traces) or offline (a trace dataset).

A data source is anything with ``batch(step, batch_size) -> Batch``: the batch of a step is a
function of the source's seed and the step alone, so a run resumed from a checkpoint sees exactly
the batches the uninterrupted run would have seen, and a distributed trainer can give rank ``r``
of ``R`` the source ``source.shard(r, R)``.

:class:`Trainer` (registered as ``single``) keeps the per-step logic in :meth:`Trainer.train_step`
and its hooks (:meth:`Trainer.after_backward`, :meth:`Trainer.reduce_loss`), which a distributed
subclass overrides to all-reduce gradients. Every rank must build the same layers (pre-scan a
dataset, or ``prescan_traces`` online); :meth:`Trainer.fill_missing_gradients` gives parameters
that a rank's minibatch never touched a zero gradient, so that an all-reduce over every
parameter lines up across ranks.

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
from ..data.records import Batch, collate, record_from_trace
from ..errors import ConfigError
from ..progress import Progress
from .network import ProposalNetwork

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
NETWORK = "network.pt"
LOG_CSV = "training_log.csv"
LOSS_PNG = "loss.png"
_VALIDATION_KEY = 1 << 40   # chunk index space of validation traces, far from training steps


# ----------------------------------------------------------------------------------------------
# Data sources


class OnlineSource:
    """Fresh traces from the simulator: step ``s`` draws ``batch_size`` traces with
    ``chunk_rng(seed, s)`` (observations drawn from their distributions; optional prior
    inflation)."""

    def __init__(self, simulator: Any, seed: int = 0, prior_inflation: float | None = None,
                 rank: int = 0, num_ranks: int = 1) -> None:
        from ..data.dataset import check_inflation
        from ..simulator import SimulatorSpec, as_simulator

        self.spec = simulator
        self.simulator = simulator.build() if isinstance(simulator, SimulatorSpec) else as_simulator(simulator)
        self.name = getattr(simulator, "name", self.simulator.name)
        self.seed = int(seed)
        self.prior_inflation = check_inflation(prior_inflation)
        self.rank, self.num_ranks = int(rank), int(num_ranks)

    def shard(self, rank: int, num_ranks: int) -> "OnlineSource":
        return OnlineSource(self.spec, self.seed, self.prior_inflation, rank, num_ranks)

    def traces(self, key: int, count: int) -> list:
        from ..data.dataset import make_generation_controller
        from ..seeding import chunk_rng
        from ..simulator import run_traces

        controller = make_generation_controller(chunk_rng(self.seed, key), self.prior_inflation)
        return list(run_traces(self.simulator, controller, count, retries=3))

    def batch(self, step: int, batch_size: int) -> Batch:
        key = step * self.num_ranks + self.rank
        return collate([record_from_trace(t, key * batch_size + i)
                        for i, t in enumerate(self.traces(key, batch_size))])

    def validation_batch(self, size: int) -> Batch:
        return collate([record_from_trace(t, -1 - i)
                        for i, t in enumerate(self.traces(_VALIDATION_KEY, size))])

    def prescan_traces(self, count: int) -> list:
        return self.traces(_VALIDATION_KEY + 1, count)

    def describe(self) -> dict:
        return {"kind": "online", "simulator": self.name, "seed": self.seed,
                "prior_inflation": self.prior_inflation}


class DatasetSource:
    """Minibatches from a :class:`~etalumis_core.data.TraceDataset`: epoch ``e`` visits the
    training traces in the order ``chunk_rng(seed, e).permutation``; the last
    ``validation_size`` traces are held out for validation."""

    def __init__(self, dataset: Any, seed: int = 0, validation_size: int = 0,
                 rank: int = 0, num_ranks: int = 1) -> None:
        from ..data.dataset import TraceDataset

        self.dataset = dataset if isinstance(dataset, TraceDataset) else TraceDataset(dataset)
        self.seed = int(seed)
        self.validation_size = int(validation_size)
        self.num_train = len(self.dataset) - self.validation_size
        if self.num_train < 1:
            raise ConfigError(f"validation_size {validation_size} leaves no training traces in "
                              f"a dataset of {len(self.dataset)}")
        self.rank, self.num_ranks = int(rank), int(num_ranks)
        self._epoch: tuple[int, np.ndarray] | None = None

    def shard(self, rank: int, num_ranks: int) -> "DatasetSource":
        return DatasetSource(self.dataset, self.seed, self.validation_size, rank, num_ranks)

    def batch(self, step: int, batch_size: int) -> Batch:
        from ..seeding import chunk_rng

        per_step = batch_size * self.num_ranks
        steps_per_epoch = max(self.num_train // per_step, 1)
        epoch, pos = divmod(step, steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, chunk_rng(self.seed, epoch).permutation(self.num_train))
        perm = self._epoch[1]
        start = pos * per_step + self.rank * batch_size
        ids = perm[np.arange(start, start + batch_size) % self.num_train]
        return self.dataset.batch(ids)

    def validation_batch(self, size: int) -> Batch:
        size = min(size, self.validation_size)
        if size < 1:
            raise ConfigError("validation needs DatasetSource(validation_size=...) > 0")
        return self.dataset.batch(np.arange(self.num_train, self.num_train + size))

    def describe(self) -> dict:
        return {"kind": "dataset", "path": str(self.dataset.path), "seed": self.seed,
                "validation_size": self.validation_size}


def as_source(data: Any, seed: int, prior_inflation: float | None = None,
              validation_size: int = 0) -> Any:
    """A data source from a source, a dataset (or its path), or a simulator (online)."""
    from ..data.dataset import TraceDataset

    if hasattr(data, "batch") and hasattr(data, "validation_batch"):
        return data
    if isinstance(data, TraceDataset) or (isinstance(data, (str, os.PathLike))
                                          and (Path(data) / "manifest.json").exists()):
        return DatasetSource(data, seed, validation_size)
    return OnlineSource(data, seed, prior_inflation)


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
    """Single-process training (registered as ``single``).

    Options (constructor defaults, overridable per :meth:`train` call): ``optimizer``
    (``adam``/``sgd``), ``lr``, ``lr_end``, ``lr_decay_power`` (polynomial decay over the run;
    0 keeps ``lr``), ``momentum``, ``weight_decay``, ``larc`` and ``larc_trust_coefficient``,
    ``seed`` (data and initialisation), ``prior_inflation`` (online), ``prescan_traces``
    (online: build layers for the addresses of this many traces first),
    ``validation_size``/``validation_interval``, ``checkpoint_interval`` (steps),
    ``log_interval`` (steps per CSV row), ``max_seconds`` (stop early), ``num_threads``
    (torch CPU threads) and ``progress``.
    """

    name = "single"
    defaults: dict[str, Any] = dict(
        optimizer="adam", lr=1e-3, lr_end=1e-6, lr_decay_power=0.0, momentum=0.9,
        weight_decay=0.0, larc=False, larc_trust_coefficient=0.02, seed=0, prior_inflation=None,
        prescan_traces=0, validation_size=0, validation_interval=100, checkpoint_interval=500,
        log_interval=10, max_seconds=None, num_threads=None, progress=None, plot=True)

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ConfigError(f"unknown trainer option(s) {sorted(unknown)}; known: "
                              f"{sorted(self.defaults)}")
        self.options = {**self.defaults, **options}
        self.network: ProposalNetwork | None = None
        self.optimizer: Any = None
        self.step = 0
        self.total_steps = 0
        self.batch_size = 0
        self.param_groups: list[list[str]] = []

    # -- per step ------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> float:
        """One optimisation step on a batch; returns the (reduced) loss."""
        self.grow(batch)
        self.set_lr(self.current_lr())
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.network.loss(batch)
        loss.backward()
        self.after_backward()
        self.optimizer.step()
        self.step += 1
        return self.reduce_loss(float(loss.detach()))

    def after_backward(self) -> None:
        """Between backward and the optimizer step: a distributed trainer calls
        :meth:`fill_missing_gradients` and all-reduces the gradients here."""

    def reduce_loss(self, loss: float) -> float:
        """The loss to log; a distributed trainer averages it over ranks."""
        return loss

    def fill_missing_gradients(self) -> None:
        """Zero gradients for parameters this step did not touch (addresses absent from the
        minibatch), so that every rank all-reduces the same list of tensors."""
        for p in self.network.parameters():
            if p.grad is None and p.requires_grad:
                p.grad = torch.zeros_like(p)

    def grow(self, batch: Batch) -> None:
        """Layers for addresses met for the first time become a new optimizer parameter group
        (earlier groups keep their optimizer state)."""
        known = set(self.network.address_ids)
        sites = [(a, *info) for a, info in batch.sites().items()]
        new_sites = [s for s in sites if s[0] not in known]
        params = self.network.ensure_sites(sites)
        if params:
            self.add_param_group([n for s in new_sites for n in
                                  self.network.site_parameter_names(s[0])])

    def add_param_group(self, names: list[str]) -> None:
        named = dict(self.network.named_parameters())
        self.optimizer.add_param_group({"params": [named[n] for n in names],
                                        "lr": self.current_lr()})
        self.param_groups.append(names)

    def current_lr(self) -> float:
        return self.lr_at(self.step)

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (a distributed trainer adds scaling and warm-up)."""
        o = self.options
        return polynomial_decay(step, self.total_steps, o["lr"], o["lr_end"], o["lr_decay_power"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def validation_loss(self, batch: Batch) -> float:
        """Loss on held-out traces (trace types whose addresses all have layers)."""
        known = self.network.address_ids
        batch = Batch([sb for sb in batch.sub_batches if all(a in known for a in sb.trace_type)])
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
        path, or a data source) for ``steps`` steps or ``num_traces`` traces.

        With ``resume`` and a checkpoint in ``output_dir``, training continues from it exactly
        (same later batches, same optimizer state, same losses).
        """
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ConfigError(f"unknown trainer option(s) {sorted(unknown)}")
        self.options = {**self.options, **options}
        o = self.options
        if (steps is None) == (num_traces is None):
            raise ConfigError("give exactly one of steps and num_traces")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.total_steps = int(steps) if steps is not None else math.ceil(num_traces / batch_size)
        self.batch_size = int(batch_size)
        if o["num_threads"]:
            torch.set_num_threads(int(o["num_threads"]))
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        source = as_source(data, o["seed"], o["prior_inflation"], o["validation_size"])
        self.network = network
        self.source = source
        torch.manual_seed(o["seed"])
        self.step = 0
        self.param_groups = []
        losses: list[float] = []
        validation: list[tuple[int, float]] = []
        checkpoint = out / CHECKPOINT
        resumed_from = 0
        if resume and checkpoint.exists():
            losses, validation = self.load_checkpoint(checkpoint)
            resumed_from = self.step * self.batch_size
            log.info("resuming training from step %d", self.step)
        else:
            if o["prescan_traces"] and hasattr(source, "prescan_traces"):
                network.prescan(source.prescan_traces(int(o["prescan_traces"])))
            self.optimizer = make_optimizer(o["optimizer"], network.parameters(), o["lr"],
                                            o["momentum"], o["weight_decay"], o["larc"],
                                            o["larc_trust_coefficient"])
            self.param_groups = [[n for n, _ in network.named_parameters()]]
        validation_batch = None
        if o["validation_size"]:
            validation_batch = source.validation_batch(int(o["validation_size"]))
        self._write_csv(out, losses, validation, rewrite=True)
        network.train()
        started = time.perf_counter()
        pending: list[float] = []
        with Progress(self.total_steps * self.batch_size, "training", o["progress"]) as bar:
            bar.update(self.step * self.batch_size)
            while self.step < self.total_steps:
                batch = source.batch(self.step, self.batch_size)
                if not bool(network.normalizer_ready):
                    network.fit_normalizer(batch)
                loss = self.train_step(batch)
                losses.append(loss)
                network.traces_trained += batch.size
                pending.append(loss)
                bar.update(batch.size)
                if validation_batch is not None and self.step % o["validation_interval"] == 0:
                    validation.append((self.step, self.validation_loss(validation_batch)))
                if self.step % o["log_interval"] == 0 or self.step == self.total_steps:
                    bar.show(loss=float(np.mean(pending)))
                    self._write_csv(out, losses, validation, rows_since=len(pending))
                    pending = []
                if self.step % o["checkpoint_interval"] == 0 or self.step == self.total_steps:
                    self.save_checkpoint(checkpoint, losses, validation)
                if o["max_seconds"] and time.perf_counter() - started > o["max_seconds"]:
                    log.info("stopping after %.1f s (max_seconds)", time.perf_counter() - started)
                    if pending:
                        self._write_csv(out, losses, validation, rows_since=len(pending))
                    self.save_checkpoint(checkpoint, losses, validation)
                    break
        wall = time.perf_counter() - started
        network.eval()
        if self.is_writer:
            network.save(out / NETWORK)
            if o["plot"]:
                self.plot(out / LOSS_PNG, losses, validation)
        return TrainingResult(network, out, self.step, self.step * self.batch_size, losses,
                              validation, wall, resumed_from)

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """Whether this process writes files (the network, checkpoints, logs, plots); in a
        distributed run, rank 0 only."""
        return True

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
