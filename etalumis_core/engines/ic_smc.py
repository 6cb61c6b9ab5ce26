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
  tempering from the prior cannot. As β grows, (w' / w)^β sharpens and these moves stop being
  accepted while each still costs a network pass and a simulator run, so after a round that
  accepted fewer than ``min_independence_acceptance`` of them the run leaves them out.
* with ``stratify`` (a decay channel), the network also redraws everything after that choice,
  the choice and every value before it kept (:func:`regeneration_move`): an independence move
  within the particle's channel, accepted with the same probability. A richer channel that
  the stratified resampling keeps alive holds few particles, often copies of one badly placed
  ancestor that differential-evolution steps between them cannot refine; the network places
  its particles afresh, given the channel, where the plain independence move would have to
  draw that channel first. It stops as the independence move does, on its own acceptance.
* the simulator's own moves (``model_moves``) run in the last round only, where no move is
  scored: before it, each accepted one would cost a network pass besides its simulator run;
  its jumps between discrete structures run in every round, where the tempered likelihood
  lets a jump to a richer structure in before the data sharpen against it.

Values the network has no proposal for (addresses it never met in training) are drawn from
the prior, counted in ``posterior.metadata["ic"]`` as for inference compilation.

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
from .smc import MoveContext, Particle, SequentialMonteCarlo, independence_move, network_move

# The moves that draw from the network: each costs a network pass and a simulator run, so each
# stops after a round that accepts too few.
NETWORK_MOVES = ("independence", "regeneration")


class NetworkGuidedSMC(NetworkEngine, SequentialMonteCarlo):
    """SMC tempered from a proposal network's q(x | y) to the posterior (``ic_smc``).

    Parameters
    ----------
    network, check_simulator, embeddings, num_threads:
        The proposal network, as for inference compilation (:class:`~.ic.NetworkEngine`).
    independence_probability:
        Chance per sweep of a move to a fresh trace from the network (an independence
        Metropolis move, accepted with probability min(1, (w' / w)^β)), and, with
        ``stratify``, of one that redraws only what follows that choice.
    min_independence_acceptance:
        Each of those two moves stops for the rest of the run after a round that accepted
        fewer than this fraction of it (0 keeps them to the end).
    model_moves:
        As for :class:`~.smc.SequentialMonteCarlo`, but ``"jumps"`` by default: before the
        last round every accepted move is also scored under the network, and the simulator's
        own moves, accepted most of the time, would cost a network pass each besides their
        run. Where they move along the likelihood's level sets (the tau plugin's hold every
        visible particle in place), the tempering loses nothing without them; in the last
        round they spread the population over what the data leave free. The jumps, rarely
        accepted, cost little, and reach a richer structure while the likelihood is tempered
        (``"final"`` keeps them for the last round too).
    dispute_share:
        With ``stratify``: :meth:`summarize` warns where a value of that choice made by at least
        this share of the network's start proposals keeps no particle of the posterior
        (``lost_stratum``: the network was wrong there, or the search lost a richer
        explanation, which more particles find in some runs).
    options:
        Everything else as for :class:`~.smc.SequentialMonteCarlo` (``ess_fraction``,
        ``moves``, ``max_moves``, ``chunk_size``, ...).
    """

    name = "ic_smc"

    def __init__(self, network: Any, independence_probability: float = 0.5,
                 min_independence_acceptance: float = 0.01, check_simulator: bool = True,
                 num_threads: int | None = 1, embeddings: Any = None,
                 model_moves: bool | str = "jumps", dispute_share: float = 0.1,
                 **options: Any) -> None:
        super().__init__(model_moves=model_moves, **options)
        for label, p in (("independence_probability", independence_probability),
                         ("min_independence_acceptance", min_independence_acceptance)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must lie in [0, 1], got {p!r}")
        if not 0.0 < dispute_share <= 1.0:
            raise ValueError(f"dispute_share must lie in (0, 1], got {dispute_share!r}")
        self.independence_probability = float(independence_probability)
        self.min_independence_acceptance = float(min_independence_acceptance)
        self.dispute_share = float(dispute_share)
        self.use_network(network, check_simulator, num_threads, embeddings)

    def options(self) -> dict:
        return {**super().options(), "independence_probability": self.independence_probability,
                "min_independence_acceptance": self.min_independence_acceptance,
                **({"dispute_share": self.dispute_share} if self.stratify is not None else {}),
                "network": self.network_path or "<in memory>"}

    @contextlib.contextmanager
    def guide(self, rng: np.random.Generator, observations: dict) -> Iterator[ICController]:
        with self.sampling():
            yield ICController(rng, observations, self.network)

    def kernels(self) -> tuple[tuple[str, Callable[..., Any]], ...]:
        return super().kernels() + (("independence", independence_move),
                                    ("regeneration", regeneration_move))

    def retired_kernels(self, rounds: list[dict], beta: float) -> frozenset[str]:
        return super().retired_kernels(rounds, beta) | {
            kind for kind in NETWORK_MOVES
            if any(r[f"tried_{kind}"] and r[f"acceptance_{kind}"]
                   < self.min_independence_acceptance for r in rounds)}

    def scores_moves(self, beta: float, retired: frozenset[str]) -> bool:
        return beta < 1.0 or not retired.issuperset(NETWORK_MOVES)

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        self.check_network(simulator)
        posterior = super()._run(simulator, observations, num_traces, seed, executor, progress)
        posterior.metadata["ic"] = self.network_metadata(
            posterior.metadata.pop("guide_unknown_addresses", {}))
        return posterior

    def disputed(self, metadata: dict) -> dict[str, float]:
        """The values of the ``stratify`` choice that at least ``dispute_share`` of the
        network's proposals made and no particle of the posterior does, by that share."""
        start, final = metadata.get("start_shares"), metadata.get("final_shares")
        if not start or not final:
            return {}
        return {value: share for value, share in start.items()
                if share >= self.dispute_share and value not in final}

    def summarize(self, posterior: Posterior) -> dict:
        summary = super().summarize(posterior)
        summary["warnings"].update(self.fallback_warnings(posterior))
        disputed = self.disputed(posterior.metadata)
        if disputed:
            summary["warnings"]["lost_stratum"] = (
                f"the network proposed {self.stratify} = "
                + ", ".join(f"{value} ({share:.0%} of its proposals)"
                            for value, share in disputed.items())
                + f" and the posterior keeps none of it: the search may have lost it, so its "
                  f"certainty about {self.stratify} is in doubt; more particles (num_traces) "
                  f"find it in some runs")
        return summary


def regeneration_move(context: MoveContext, particle: Particle) -> Any:
    """The network's proposal for everything after the ``stratify`` choice (the decay
    products), the choice and every value before it (the tau momentum) kept: an independence
    Metropolis move within the particle's discrete structure. A richer channel that keeps only
    a few, badly placed particles through the stratified resampling gets fresh placements
    drawn for its own channel, where the plain independence move draws the channel too and
    rarely draws that one. The kept values' network densities are the same in both traces,
    so the ratio is that of the plain independence move, w(x')^β / w(x)^β."""
    through = context.engine.stratify
    if through is None:
        return None
    return network_move(context, particle,
                        lambda guide: guide.keeping(particle.values, through))
