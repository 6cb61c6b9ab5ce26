"""Inference compilation: importance sampling with proposals from a trained network.

The controller asks the network for a proposal at every controlled address, samples from it
and returns its log density, so each trace is weighted by likelihood × prior / proposal. An
address the network never saw in training is drawn from its prior (its proposal *is* the
prior, so the weight stays correct); such fallbacks are counted in
``posterior.metadata["ic"]``.

The engine takes ``network=`` a network file (each worker loads it once; ``pkg://PACKAGE/PATH``
names one shipped inside an installed package, such as a plugin's trained network) or a
:class:`~etalumis_core.nn.ProposalNetwork`. torch is imported only when the engine runs.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections import Counter
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..controller import Controller
from ..errors import EtalumisError, ObservationError
from ..executors import Executor
from ..posterior import Posterior
from ..simulator import Simulator, SimulatorSpec, simulator_name
from ..trace import SAMPLE, Trace
from .importance import ImportanceSampling
from .mh import _MISSING

_loaded: dict[tuple[str, float], Any] = {}   # per process: network files already read
PACKAGE_SCHEME = "pkg://"


def network_file(network: str | os.PathLike) -> str:
    """The path of a network file: a path as it is, or ``pkg://PACKAGE/PATH``, the file PATH
    shipped inside the installed package PACKAGE (as Hydra names a package's config folder)."""
    text = os.fspath(network)
    if not text.startswith(PACKAGE_SCHEME):
        path = text
    else:
        package, _, inside = text[len(PACKAGE_SCHEME):].partition("/")
        try:
            path = str(importlib.resources.files(package).joinpath(inside))
        except (ModuleNotFoundError, TypeError) as error:
            raise FileNotFoundError(f"{text}: no installed package {package!r} ({error}); "
                                    f"install the plugin that ships the network") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{text}: no such network file")
    return path


def _load_network(path: str, embeddings: Any = None) -> Any:
    from ..nn.network import ProposalNetwork

    key = (os.path.abspath(path), os.path.getmtime(path))
    network = _loaded.get(key)
    if network is None:
        network = _loaded[key] = ProposalNetwork.load(path, embeddings=embeddings)
    return network


class ICController(Controller):
    """Proposes every controlled sample from the network; unknown addresses from the prior."""

    _kept: Mapping[str, Any] | None = None   # see keeping()
    _through: str | None = None
    _keeping = False

    def __init__(self, rng: np.random.Generator, observations: Mapping[str, Any], network: Any) -> None:
        import torch

        super().__init__(rng, observations)
        self.network = network
        self._torch = torch
        shapes = network.observation_shapes
        missing = [n for n in shapes if n not in self.observations]
        if missing:
            raise ObservationError(
                f"the network conditions on observation(s) {', '.join(missing)}; pass them "
                f"(observations given: {', '.join(sorted(self.observations)) or 'none'})")
        arrays = {}
        for n, shape in shapes.items():
            value = np.asarray(self.observations[n], dtype=np.float32)
            if value.size != int(np.prod(shape)):
                raise ObservationError(f"observation {n!r} has shape {value.shape}; the network "
                                       f"was trained on shape {tuple(shape)}")
            arrays[n] = value.reshape(1, *shape)
        with torch.inference_mode():
            self._embedding = network.embed_observations(arrays)
        self.fallbacks = 0
        self.unknown: dict[str, int] = {}
        self._state: dict | None = None

    def start_trace(self) -> None:
        super().start_trace()
        self._state = None
        self._keeping = self._kept is not None

    @contextlib.contextmanager
    def keeping(self, values: Mapping[str, Any], through: str) -> Iterator[None]:
        """Inside: each trace keeps ``values`` (by address) at its controlled sites up to and
        including the first sample named ``through`` and proposes the rest, given them. The
        kept values' densities under the network are recorded all the same, so the trace's
        log q stays that of the whole trace."""
        self._kept, self._through = values, through
        try:
            yield
        finally:
            self._kept = self._through = None

    def _kept_value(self, address: str, name: str | None) -> Any:
        if not self._keeping or address not in self._kept:
            return _MISSING
        if name == self._through:
            self._keeping = False
        return self._kept[address]

    def propose(self, address: str, distribution: Any, name: str | None) -> tuple[Any, float | None, bool]:
        if self._state is None:
            self._state = self.network.initial_state(self._embedding)
        kept = self._kept_value(address, name)
        with self._torch.inference_mode():
            proposal = self.network.propose(self._state, address, distribution,
                                            tuple(distribution.batch_shape))
            if proposal is None:   # an address the network does not know: no input next step
                self.network.skip(self._state)
                self.fallbacks += 1
                self.unknown[address] = self.unknown.get(address, 0) + 1
                return (distribution.sample(self.rng) if kept is _MISSING else kept), None, False
            value = proposal.sample(self.rng) if kept is _MISSING else kept
            self.network.observe_value(self._state, value)
        log_q = proposal.log_prob(value)
        return value, float(np.sum(log_q)), False

    def score(self, trace: Trace) -> float:
        """log q(x | y) of a complete trace: the log density with which :meth:`propose` draws
        its controlled values, in order (the prior's at an address the network does not know).
        Uncontrolled samples and observations are not proposed, so they do not enter. One
        pass of the network over the whole trace (:meth:`ProposalNetwork.log_prob_of`)."""
        controlled = [v for v in trace.variables if v.kind is SAMPLE and v.control]
        with self._torch.inference_mode():
            log_q, proposed = self.network.log_prob_of(
                [(v.address, v.distribution, v.value) for v in controlled], self._embedding)
        return log_q + sum(v.log_prob for v, p in zip(controlled, proposed) if not p)


class NetworkEngine:
    """What an engine that draws from a proposal network shares: the network, from a file
    (each worker process loads it once, never a pickled copy) or in memory; the check that it
    was trained for the simulator; and torch's threads while it proposes.

    Parameters
    ----------
    network:
        A network file written by :meth:`ProposalNetwork.save` (workers load it themselves;
        ``pkg://PACKAGE/PATH`` for one shipped in a package), or a :class:`ProposalNetwork`.
    check_simulator:
        Refuse a network trained for a differently named simulator.
    embeddings:
        Where a network file's observation embedding is found by name (see
        :class:`~etalumis_core.nn.ProposalNetwork`); the plugin registry gives the installed
        architectures.
    num_threads:
        torch threads while sampling (the network runs on one trace at a time, where one
        thread is fastest); restored afterwards. None leaves torch's setting alone.
    """

    name = "network"

    def use_network(self, network: Any, check_simulator: bool = True,
                    num_threads: int | None = 1, embeddings: Any = None) -> None:
        if network is None:
            raise ValueError(f"engine {self.name!r} needs network= (a network file or a "
                             f"ProposalNetwork); train one with etalumis_core.nn.Trainer")
        if isinstance(network, (str, os.PathLike)):
            self.network_path: str | None = network_file(network)
            self._network = None
        else:
            self.network_path = None
            self._network = network
        self.check_simulator = bool(check_simulator)
        self.num_threads = num_threads
        self.embeddings = embeddings

    @property
    def network(self) -> Any:
        if self._network is None:
            self._network = _load_network(self.network_path, self.embeddings)
        return self._network

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.network_path is not None:
            state["_network"] = None   # workers read the file, not a pickled copy
        return state

    def check_network(self, simulator: Simulator | SimulatorSpec) -> None:
        name = simulator_name(simulator)
        trained_for = self.network.simulator
        if self.check_simulator and trained_for not in (None, name):
            raise EtalumisError(f"the network was trained for simulator {trained_for!r}, not "
                                f"{name!r}; use a network trained for {name!r} (or "
                                f"check_simulator=False if they are the same simulator)")

    def network_metadata(self, unknown: Mapping[str, int]) -> dict:
        """``posterior.metadata["ic"]``: the values drawn from the prior at addresses the
        network does not know (count, and by address), and the network's provenance."""
        return {"prior_fallbacks": int(sum(unknown.values())), "unknown_addresses": dict(unknown),
                "network_simulator": self.network.simulator,
                "network_traces_trained": self.network.traces_trained}

    @staticmethod
    def fallback_warnings(posterior: Posterior) -> dict[str, str]:
        fallbacks = posterior.metadata.get("ic", {}).get("prior_fallbacks", 0)
        if not fallbacks:
            return {}
        unknown = posterior.metadata["ic"]["unknown_addresses"]
        return {"prior_fallbacks": f"{fallbacks} random choices at {len(unknown)} address(es) "
                                   f"the network never saw in training were drawn from the "
                                   f"prior; train on traces that reach them"}

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        import torch

        threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        try:
            yield
        finally:
            torch.set_num_threads(threads)


class InferenceCompilation(NetworkEngine, ImportanceSampling):
    """Importance sampling with a trained proposal network (registered as ``ic``).

    Parameters
    ----------
    network, check_simulator, embeddings, num_threads:
        As for :class:`NetworkEngine`.
    chunk_size, retries, max_value_size:
        As for :class:`ImportanceSampling`.
    """

    name = "ic"

    def __init__(self, network: Any, chunk_size: int = 128, retries: int = 3,
                 max_value_size: int = 4096, check_simulator: bool = True,
                 num_threads: int | None = 1, embeddings: Any = None) -> None:
        super().__init__(chunk_size, retries, max_value_size)
        self.use_network(network, check_simulator, num_threads, embeddings)

    def options(self) -> dict:
        return {**super().options(), "network": self.network_path or "<in memory>"}

    def make_controller(self, rng: np.random.Generator, observations: Mapping[str, Any]) -> Controller:
        return ICController(rng, observations, self.network)

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        self.check_network(simulator)
        return super()._run(simulator, observations, num_traces, seed, executor, progress)

    def chunk_metadata(self, controller: Controller) -> dict:
        return {"prior_fallbacks": controller.fallbacks,
                "unknown_addresses": dict(controller.unknown)}

    def run_metadata(self, parts: Sequence[Posterior]) -> dict:
        unknown = sum((Counter(p.metadata.get("unknown_addresses", {})) for p in parts),
                      Counter())
        return {"ic": self.network_metadata(unknown)}

    def summarize(self, posterior: Posterior) -> dict:
        summary = super().summarize(posterior)
        summary["warnings"].update(self.fallback_warnings(posterior))
        return summary
