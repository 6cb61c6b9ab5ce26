"""Network-guided SMC: sequential Monte Carlo that starts from a proposal network, not the prior.

Tempering from the prior finds the posterior's simplest explanations first, and once the
population has settled on one no local move reaches a richer one (a decay channel with more
particles). A network trained by inference compilation already proposes from something close
to the posterior, so this engine bridges from the network's proposal q(x | y) to the posterior
along the geometric path

    π_β(x) ∝ q(x | y)^(1−β) [p(x) p(y | x)]^β,   0 = β₀ < β₁ < … < β_T = 1,

with everything else as in :class:`~.smc.SequentialMonteCarlo`:

* β = 0: the population is drawn from the network, equally weighted (π₀ = q);
* a step β → β' reweights by w^(β'−β) with w = p(x) p(y | x) / q(x | y), the importance
  weight of inference compilation; the step is chosen by bisection to keep ``ess_fraction``
  of the particles, then the population is resampled (systematic);
* every move leaves π_β invariant: the lightweight-MH acceptance of SMC gains the term
  (1 − β) Δ(log q − log p), so each proposed trace is scored under the network
  (:meth:`ICController.score`);
* a fresh trace from the network is proposed as an independence Metropolis move, accepted with
  probability min(1, w(x')^β / w(x)^β): it jumps to a channel the population has lost, which
  tempering from the prior cannot.

The evidence estimate stays unbiased: the normaliser of π₀ is 1 (q is a normalised density over
traces: each head is a normalised distribution, and addresses the network does not know are
drawn from their prior), that of π₁ is p(y), and each round's mean incremental weight
estimates the ratio of consecutive normalisers. No property of the network enters the
correctness: an untrained network gives a correct, only slower, answer; a good one starts the
population near the posterior, so tempering takes few rounds.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

from ..executors import Executor
from ..posterior import Posterior
from ..simulator import Simulator, SimulatorSpec
from .ic import ICController, NetworkEngine
from .smc import SequentialMonteCarlo, independence_move


class NetworkGuidedSMC(NetworkEngine, SequentialMonteCarlo):
    """SMC tempered from a proposal network's q(x | y) to the posterior (``ic_smc``).

    Parameters
    ----------
    network, check_simulator, embeddings, num_threads:
        The proposal network, as for inference compilation (:class:`~.ic.NetworkEngine`).
    independence_probability:
        Chance per sweep of a move to a fresh trace from the network (an independence
        Metropolis move, accepted with probability min(1, (w' / w)^β)).
    options:
        Everything else as for :class:`~.smc.SequentialMonteCarlo` (``ess_fraction``,
        ``moves``, ``max_moves``, ``chunk_size``, ...).
    """

    name = "ic_smc"

    def __init__(self, network: Any, independence_probability: float = 0.5,
                 check_simulator: bool = True, num_threads: int | None = 1,
                 embeddings: Any = None, **options: Any) -> None:
        super().__init__(**options)
        if not 0.0 <= independence_probability <= 1.0:
            raise ValueError(f"independence_probability must lie in [0, 1], got "
                             f"{independence_probability!r}")
        self.independence_probability = float(independence_probability)
        self.use_network(network, check_simulator, num_threads, embeddings)

    def options(self) -> dict:
        return {**super().options(), "independence_probability": self.independence_probability,
                "network": self.network_path or "<in memory>"}

    @contextlib.contextmanager
    def guide(self, rng: np.random.Generator, observations: dict) -> Iterator[ICController]:
        with self.sampling():
            yield ICController(rng, observations, self.network)

    def kernels(self) -> tuple[tuple[str, Callable[..., Any]], ...]:
        return super().kernels() + (("independence", independence_move),)

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        self.check_network(simulator)
        return super()._run(simulator, observations, num_traces, seed, executor, progress)
