"""Sherpa as an etalumis simulator: a PPX process with compact addresses and tau analysis.

:class:`SherpaSimulator` is a :class:`~etalumis_core.ppx.PPXSimulator` (launch, handshake,
timeouts, restart of a dead or stalled process, retried traces) that

* builds Sherpa's command line from a template, a run card, an environment and a working
  directory (:func:`sherpa_command`);
* passes every base address through an :class:`~etalumis_core.ppx.AddressDictionary` before the
  controller sees it, so traces, posteriors, datasets and networks carry short stable
  addresses ``a17:Rambo::GenerateWeight__Uniform__1`` and the long native-stack form stays in
  the dictionary file;
* names the random choices a native front end leaves unnamed that the tau analysis needs (the
  first three draws are the tau momentum, the 38-way categorical is the decay channel);
* decodes the calorimeter observation (35 x 35 x 20; a flat tensor is reshaped) and the run
  result;
* reports posteriors with its tau-decay summary and plots (:mod:`.analysis`).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from etalumis_core import ConfigError, PPXSimulator

from etalumis_core.ppx.addresses import FRONT_END_PREFIXES, AddressDictionary, CompactingController

from .analysis import MOMENTUM_NAMES, NUM_CHANNELS, report

log = logging.getLogger(__name__)

CALORIMETER_SHAPE = (35, 35, 20)
DEFAULT_COMMAND = ("Sherpa", "-f", "{run_card}")


def sherpa_command(command: str | Sequence[str], run_card: str | None = None,
                   args: Sequence[str] = ()) -> list[str]:
    """Sherpa's command line: ``command`` (a list, or a string split like a shell would) with
    ``{run_card}`` replaced, then ``args``. ``{address}`` is left for the PPX layer to fill
    (without it the address is appended as the last argument)."""
    parts = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not parts:
        raise ConfigError("the Sherpa command is empty")
    wants_card = any("{run_card}" in p for p in parts)
    if wants_card and not run_card:
        raise ConfigError(f"the Sherpa command {shlex.join(parts)!r} needs a run card: set "
                          f"run_card=... (or drop {{run_card}} from the command)")
    if run_card:
        parts = [p.replace("{run_card}", str(run_card)) for p in parts]
    return parts + [str(a) for a in args]


def as_calorimeter(value: Any, shape: Sequence[int] = CALORIMETER_SHAPE) -> np.ndarray:
    """A calorimeter as a float64 array of ``shape`` (row-major; a flat tensor is reshaped)."""
    array = np.asarray(value, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"a calorimeter has {int(np.prod(shape))} voxels {shape}, got an array of "
                         f"shape {array.shape}")
    return array.reshape(shape)


def decode_result(result: Any, shape: Sequence[int] = CALORIMETER_SHAPE) -> Any:
    """The run result of a trace: a calorimeter-sized tensor becomes ``{"calorimeter": array}``
    (what the tau analysis draws); anything else is returned unchanged."""
    if result is None:
        return None
    array = np.asarray(result)
    if array.dtype.kind in "fiu" and array.size == int(np.prod(shape)):
        return {"calorimeter": array.astype(np.float64, copy=False).reshape(tuple(shape))}
    return result


class _SherpaController(CompactingController):
    """Stands between the PPX engine and the engine's controller for one trace: compacts base
    addresses, names the tau variables, reshapes the calorimeter."""

    __slots__ = ("_momentum", "_channel", "_samples", "_named_channel", "_observation", "_shape")

    def __init__(self, controller: Any, sim: "SherpaSimulator") -> None:
        super().__init__(controller, sim.addresses.compact)
        self._momentum = sim.momentum_names
        self._channel = sim.channel_name
        self._observation = sim.observation_name
        self._shape = sim.calorimeter_shape
        self._samples = 0
        self._named_channel = False

    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any:
        k = self._samples
        self._samples = k + 1
        if not name:
            if k < len(self._momentum):
                name = self._momentum[k]
            elif (self._channel and not self._named_channel and distribution.name == "Categorical"
                  and distribution.batch_shape == () and _num_categories(distribution) == NUM_CHANNELS):
                name = self._channel
                self._named_channel = True
        return super().sample(base, distribution, name or None, control)

    def observe(self, base: str, distribution: Any, value: Any, name: str | None) -> Any:
        if name == self._observation:
            distribution = _reshaped(distribution, self._shape)
            if value is not None:
                value = as_calorimeter(value, self._shape)
        return super().observe(base, distribution, value, name)


def _num_categories(distribution: Any) -> int:
    probs = distribution.params().get("probs")
    return int(np.shape(probs)[-1]) if probs is not None and np.ndim(probs) else 0


def _reshaped(distribution: Any, shape: tuple[int, ...]) -> Any:
    """The calorimeter's distribution with batch shape ``shape`` when it came flat (front ends
    that send shape ``[]`` for a vector)."""
    batch = tuple(distribution.batch_shape)
    if batch == shape or int(np.prod(batch or (1,))) != int(np.prod(shape)):
        return distribution
    params = {k: np.reshape(v, shape) for k, v in distribution.params().items()}
    return type(distribution).from_params(**params)


class SherpaSimulator(PPXSimulator):
    """A PPX-enabled Sherpa process (or several, one per executor worker) under etalumis.

    Parameters
    ----------
    command:
        Sherpa's command line, a list or a string; ``{run_card}`` is replaced by ``run_card``,
        ``{address}`` by the PPX address (appended when absent). Default ``Sherpa -f {run_card}``.
    run_card:
        The run card (``Run.dat`` in Sherpa 2.2), relative to ``cwd`` when relative.
    args:
        Extra arguments after the command (e.g. ``EVENTS=...`` style Sherpa overrides).
    env, cwd:
        Extra environment variables and the working directory of the Sherpa process.
    address:
        Connect to a Sherpa already running and bound there instead of launching one (then
        ``command`` is ignored).
    transport:
        ``ipc`` (default) or ``tcp``: how a launched process is reached.
    address_dictionary:
        File of the :class:`AddressDictionary` (created if missing). Share one file between
        every process of a run (workers, dataset generation, training, inference) so compact
        ids agree; keep it beside the datasets and networks it belongs to. ``None`` keeps the
        dictionary in memory (one process only).
    innermost_first, alias_parts, skip_frame_prefixes:
        How aliases are made from the native stacks (see :func:`~etalumis_core.ppx.make_alias`).
    observation_name:
        Name of Sherpa's calorimeter observe.
    momentum_names, channel_name:
        Names given to the first unnamed random choices (the tau momentum) and to the first
        unnamed 38-way categorical (the decay channel); empty to give none.
    variable_names:
        Analysis name -> the name Sherpa's trace uses for it, for the tau report (e.g.
        ``{"e_visible": "visible_energy"}``).
    timeout, startup_timeout, poll_interval, grace:
        As for :class:`~etalumis_core.ppx.PPXSimulator`; Sherpa's initialisation (matrix
        elements, integration) can take minutes, hence the long ``startup_timeout`` default.
    log_file:
        Where the Sherpa process's stdout and stderr go (appended; relative to ``cwd``);
        default: inherited.
    name:
        The simulator's name (datasets and networks record it).
    """

    def __init__(self, command: str | Sequence[str] = DEFAULT_COMMAND, run_card: str | None = None,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None, address: str | None = None,
                 transport: str = "ipc", address_dictionary: str | os.PathLike | None = None,
                 innermost_first: bool = True, alias_parts: int = 2,
                 skip_frame_prefixes: Sequence[str] = FRONT_END_PREFIXES,
                 observation_name: str = "calorimeter",
                 calorimeter_shape: Sequence[int] = CALORIMETER_SHAPE,
                 momentum_names: Sequence[str] = MOMENTUM_NAMES, channel_name: str = "channel",
                 variable_names: Mapping[str, str] | None = None, timeout: float = 120.0,
                 startup_timeout: float = 900.0, poll_interval: float = 0.1, grace: float = 5.0,
                 log_file: str | os.PathLike | None = None, name: str = "sherpa") -> None:
        cwd = os.fspath(cwd) if cwd is not None else None
        launch = None if address is not None else sherpa_command(command, run_card, args)
        self._log_handle = None
        stdout = stderr = None
        if log_file is not None and launch is not None:
            path = Path(log_file)
            if not path.is_absolute() and cwd is not None:
                path = Path(cwd) / path
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(path, "ab")
            stdout, stderr = self._log_handle, self._log_handle
        self.calorimeter_shape = tuple(int(s) for s in calorimeter_shape)
        super().__init__(address, launch, env={str(k): str(v) for k, v in (env or {}).items()},
                         cwd=cwd, timeout=timeout, startup_timeout=startup_timeout,
                         poll_interval=poll_interval, grace=grace, transport=transport, name=name,
                         observations={observation_name: self.calorimeter_shape},
                         stdout=stdout, stderr=stderr)
        self.run_card = run_card
        self.addresses = AddressDictionary(address_dictionary, innermost_first=innermost_first,
                                           skip_prefixes=skip_frame_prefixes,
                                           alias_parts=alias_parts)
        self.observation_name = observation_name
        self.momentum_names = tuple(momentum_names)
        self.channel_name = channel_name or None
        self.variable_names = dict(variable_names or {})

    # -- one trace -----------------------------------------------------------------------------
    def run(self, controller: Any) -> Any:
        return decode_result(super().run(_SherpaController(controller, self)),
                             self.calorimeter_shape)

    # -- the process ---------------------------------------------------------------------------
    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the running Sherpa process (for tests and for stuck runs); the next
        trace starts a fresh one."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, sig)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    # -- results -------------------------------------------------------------------------------
    def report(self, posterior: Any, truth: Any, output_dir: str) -> dict:
        """The tau-decay summary and plots (:func:`.analysis.report`) and the address
        dictionary's file and size."""
        summary = report(posterior, truth, output_dir, names=self.variable_names,
                         observation_name=self.observation_name,
                         calorimeter_shape=self.calorimeter_shape)
        summary["address_dictionary"] = {"path": str(self.addresses.path) if self.addresses.path
                                         else None, "num_addresses": len(self.addresses)}
        return summary

    def __repr__(self) -> str:
        where = (f"command={shlex.join(self.command)!r}" if self.command
                 else f"address={self.address!r}")
        return f"SherpaSimulator({where}, {len(self.addresses)} addresses)"
