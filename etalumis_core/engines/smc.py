"""Sequential Monte Carlo over execution traces, with adaptive likelihood tempering.

A population of N traces moves from the prior to the posterior through the tempered targets
π_β(x) ∝ p(x) p(y | x)^β, 0 = β₀ < β₁ < … < β_T = 1. Each round picks the next β by bisection
so that the reweighted population keeps an effective sample size of ``ess_fraction`` × N,
resamples (systematic), then moves every particle with Metropolis–Hastings kernels that leave
π_β invariant:

* a differential-evolution block move (ter Braak 2006): every *ordered* controlled value
  (continuous, or integer-valued such as a Poisson count) steps by γ (a − b), where a and b are
  two particles of the population that made the same unordered discrete choices (categoricals,
  Bernoullis). The population's spread sets the size and direction of the step, so the move
  follows the narrow, correlated ridges a sharp likelihood leaves, where single-site random
  walks stall. Half the steps move all those values, half a random half of them (a
  lower-dimensional step is accepted more often where some directions of the spread are
  curved). γ = 2.38 / √(2d) for d stepped numbers, and 1 with probability
  ``jump_probability`` (to hop between modes). Repeated draws at one base address are paired
  counting from the last (see :func:`_roles`): a rejection loop keeps its last draws, so
  accepted values step by differences of accepted values. The population a round's moves draw
  from is fixed during the round, so the step is symmetric: the reverse step uses (b, a). A
  step is rejected when the proposed trace makes different unordered choices or would step
  different addresses, which keeps that symmetry when control flow changes;
* one of the simulator's own moves, if it offers any (:meth:`Simulator.moves`): proposals that
  know a symmetry of the model, such as the tau plugin's moves of the tau momentum that keep
  every visible particle in place, which travel where no generic move can;
* one of the simulator's own jumps, if it offers any (:meth:`Simulator.jumps`): moves to
  another discrete structure that place every value of the new trace themselves, such as the
  tau plugin's swap of a pion for a kaon with the same energy and direction, which the
  calorimeter cannot tell apart and a prior redraw of the decay channel almost never finds;
* a lightweight-MH move (see :mod:`.mh`) at one controlled site drawn afresh from its prior,
  which lets a particle change its discrete choices and keeps the kernel irreducible when the
  population has collapsed: in every sweep where no block step applied (so every particle
  moves in every sweep, also in an all-discrete model), else with ``redraw_probability``.

A round sweeps until the particles have forgotten where it started (see ``max_moves``), so
fewer accepted moves mean more sweeps. Copies of one ancestor are not independent: the
effective sample size is estimated from the genealogy (:func:`genealogy_ess`), not counted.

The last sweep's proposals are not thrown away (``recycle``, waste recycling: Frenkel 2004,
Delmas & Jourdain 2009). A move from x, distributed as the posterior π, proposes y and accepts
it with probability α; α f(y) + (1 − α) f(x) then has the mean of f under π, as the kernel
leaves π invariant. So the posterior keeps, for each move of the last sweep, the proposal with
weight α and the trace it was proposed from with weight 1 − α, each particle's traces
together weighing as much as one particle. An explanation that a move reaches but that holds
no particle (a rarer decay channel that the calorimeter cannot tell from the one the
particles sit in) gets the probability the moves give it, where the particles alone would
give it 0 or 1/N at random. With ``recycle="round"`` every sweep of the last round leaves
its traces so, each sweep weighing alike: all of them start from the posterior, so each has
the right mean, and their average spreads less than the last sweep's alone.

With ``stratify`` naming a discrete choice (a decay channel), the resampling before the last
round reserves a share of the population for each of its values that the start population
made, and the particles carry the weights that correct for it: a richer explanation that the
lightly tempered likelihood ranks below a simpler one keeps particles until the moves have
placed them and the likelihood, fully weighed, decides between them.

Still, how much each explanation ends up with is decided by few particles, and it varies from
run to run more than the run's own probabilities say: a population that happened to place a
richer explanation badly reports the simpler one as certain. With ``populations``, the
particles form independent populations, each run as above, and the posterior weighs each alike
(:func:`pooled`): that variation averages out, where one population twice the size shares its
first resamplings' luck among all its particles.

Both acceptance ratios are the lightweight-MH one with the likelihood raised to β. Early rounds,
where the likelihood is flat, decide between modes and discrete structures by reweighting;
later rounds refine within them. The product of the rounds' mean incremental weights is an
unbiased estimate of the evidence p(y) (``posterior.log_evidence``, with a standard error
from the rounds' weights). N is ``num_traces``.

The prior is one start distribution among others: an engine whose :meth:`~SequentialMonteCarlo.
guide` draws from and scores under another one, q, tempers along π_β ∝ q^(1−β) (p L)^β instead,
reweighting by (p L / q)^Δβ and accepting every move at π_β (network-guided SMC, :mod:`.ic_smc`,
whose :meth:`~SequentialMonteCarlo.kernels` add the network as an independence move).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..controller import Controller
from ..distributions import Bernoulli, Categorical
from ..executors import Executor
from ..posterior import Posterior, PosteriorBuilder, logsumexp
from ..progress import Progress
from ..simulator import Simulator, SimulatorSpec, run_trace, run_traces, simulator_name
from ..trace import SAMPLE, Trace
from ..seeding import chunk_rng, split
from .base import Engine, low_ess_warnings
from .mh import _MISSING, MHController

_UNORDERED = (Categorical, Bernoulli)
# The genealogy-based ESS groups particles by ancestors no further back than keeps this many
# distinct ones: fewer lines give a variance estimate too noisy to stand behind.
MIN_ANCESTORS = 50


class Particle:
    """What a move needs of a trace: its controlled values and their prior log-probabilities,
    which of them are ordered (and their supports, to reject a step without running the
    simulator), the unordered discrete choices, the log-likelihood, and
    ``log_start_ratio`` = log q(x) − log p(x), how much likelier the start distribution q
    makes the trace than the prior does (0 when SMC starts from the prior)."""

    __slots__ = ("values", "log_probs", "supports", "integer", "controlled", "key", "choices",
                 "log_likelihood", "log_start_ratio", "_roles")

    def __init__(self, trace: Trace, log_start_ratio: float = 0.0) -> None:
        self.values: dict[str, Any] = {}
        self.log_probs: dict[str, float] = {}
        self.supports: dict[str, Any] = {}
        self.integer: set[str] = set()
        key = []
        self.choices: dict[str, Any] = {}   # the first discrete value of each name (address)
        for v in trace.variables:
            if v.kind is not SAMPLE or not v.control:
                continue
            self.values[v.address] = v.value
            self.log_probs[v.address] = v.log_prob
            distribution = v.distribution
            if isinstance(distribution, _UNORDERED) or distribution.discrete:
                self.choices.setdefault(v.name or v.address, _hashable(v.value))
            if isinstance(distribution, _UNORDERED):
                key.append((v.address, _hashable(v.value)))
            else:
                self.supports[v.address] = distribution.support
                if distribution.discrete:
                    self.integer.add(v.address)
        self.controlled = trace.controlled_addresses
        self.key = tuple(key)
        self.log_likelihood = float(trace.log_likelihood)
        self.log_start_ratio = float(log_start_ratio)
        self._roles: dict[tuple[str, int], str] | None = None

    @property
    def log_increment(self) -> float:
        """log w = log p(x) + log p(y | x) − log q(x): the tempering raises w to the step in
        β (with the prior as start, the log-likelihood)."""
        return self.log_likelihood - self.log_start_ratio

    @property
    def roles(self) -> dict[tuple[str, int], str]:
        """The ordered values' addresses by role (:func:`_roles`), worked out once: every
        block step of the particle needs them."""
        if self._roles is None:
            self._roles = _roles(self.supports)
        return self._roles


def _hashable(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else (array.shape, array.tobytes())


class SequentialMonteCarlo(Engine):
    """SMC with adaptive tempering and differential-evolution moves.

    Parameters
    ----------
    ess_fraction:
        Effective sample size, as a fraction of the particles, that each round's reweighting
        keeps (the tempering step is chosen to hit it). Higher means more, gentler rounds.
    moves:
        MH sweeps per particle in one batch, the fewest a round runs. A sweep is one
        differential-evolution move, one of the simulator's own moves and one of its jumps if
        it has any, and a prior redraw at one site (always where no differential-evolution
        step applies, so that every particle moves in every sweep; else with
        ``redraw_probability``).
    max_moves:
        Most sweeps per round. A round sweeps in batches of ``moves`` until the particles have
        decorrelated from where the round started: no scalar value (nor the log-likelihood)
        correlates across particles with its start value by more than ``decorrelation``
        (or 3/√N, the noise of a correlation over N particles). Sweeps that are rarely
        accepted take more batches: the number of sweeps adapts to the acceptance rate.
    decorrelation:
        The correlation with the round's start below which the particles count as moved apart.
    redraw_probability:
        Chance per sweep of a prior redraw at one controlled site where a differential-
        evolution step applied too.
    jump_probability:
        Chance that a differential-evolution move uses γ = 1 (a jump between modes).
    model_moves:
        Use the simulator's own moves and jumps (:meth:`Simulator.moves`,
        :meth:`Simulator.jumps`), one of each per sweep, when it has any: ``True`` in every
        round, ``"final"`` in the last round only (β = 1), ``"jumps"`` the jumps in every
        round and the moves in the last only, ``False`` never.
    max_rounds:
        Safety stop: after this many rounds the last one goes straight to β = 1 (recorded in
        ``metadata["truncated"]``).
    chunk_size:
        Particles per work item; part of the result's definition (seeds are per item).
    stratify:
        Name of a discrete choice (its address if unnamed), such as a decay channel, whose
        values the resampling keeps alive: before the last round, a share ``stratum_share`` of
        every resampling goes to the values in proportion to how often the start population
        made them, the rest by weight, and the resampled particles carry the weight that
        corrects for it (auxiliary resampling: the evidence estimate stays unbiased, the
        targets unchanged). Early rounds weigh the likelihood lightly, and a richer explanation
        whose particles start badly placed loses to a simpler one before the moves can place
        them; this keeps its particles moving until the likelihood, fully weighed, decides.
        The last round resamples by weight alone, so its particles are equally weighted as
        without it. ``metadata["start_shares"]`` and ``["final_shares"]`` give each value's
        share of the start and of the final particles.
    stratum_share:
        The share of each resampling that ``stratify`` reserves (0: plain resampling).
    recycle:
        Keep the last sweep's proposals in the posterior, each weighted by its acceptance
        probability and the trace it was proposed from by the rest (see the module's
        docstring); ``"round"``: those of every sweep of the last round, each sweep weighing
        alike; false: the final particles alone, equally weighted.
    populations:
        Independent populations that share the particles (``num_traces`` split evenly, at
        least 2 each), each drawn, tempered, resampled and moved on its own; the posterior
        weighs each population alike (:func:`pooled`). Which of several explanations (decay
        channels) a population keeps is settled by a few resamplings on a lightly tempered
        likelihood, so with few particles it varies from run to run, and one population
        reports whichever it kept with a certainty its accuracy does not earn. Populations
        that decide apart average that variation out.
    """

    name = "smc"
    progress_label: str | None = None   # the progress bar's, where not "NAME rounds"

    def __init__(self, ess_fraction: float = 0.5, moves: int = 5, max_moves: int = 10,
                 decorrelation: float = 0.25, redraw_probability: float = 0.25,
                 jump_probability: float = 0.1, model_moves: bool | str = True,
                 max_rounds: int = 1000, chunk_size: int = 16, stratify: str | None = None,
                 stratum_share: float = 0.5, recycle: bool | str = True, retries: int = 3,
                 max_value_size: int = 4096, populations: int = 1) -> None:
        if not 0.0 < ess_fraction < 1.0:
            raise ValueError(f"ess_fraction must lie in (0, 1), got {ess_fraction!r}")
        if moves < 1 or max_moves < moves or max_rounds < 1 or chunk_size < 1:
            raise ValueError(f"need moves >= 1, max_moves >= moves, max_rounds >= 1, "
                             f"chunk_size >= 1; got moves={moves}, max_moves={max_moves}, "
                             f"max_rounds={max_rounds}, chunk_size={chunk_size}")
        if not 0.0 <= decorrelation < 1.0:
            raise ValueError(f"decorrelation must lie in [0, 1), got {decorrelation!r}")
        for label, p in (("redraw_probability", redraw_probability),
                         ("jump_probability", jump_probability), ("stratum_share", stratum_share)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must lie in [0, 1], got {p!r}")
        self.ess_fraction = float(ess_fraction)
        self.moves = int(moves)
        self.max_moves = int(max_moves)
        self.decorrelation = float(decorrelation)
        self.redraw_probability = float(redraw_probability)
        self.jump_probability = float(jump_probability)
        if model_moves not in (True, False, "final", "jumps"):
            raise ValueError(f"model_moves must be true, false, 'final' or 'jumps', got "
                             f"{model_moves!r}")
        self.model_moves = (model_moves if model_moves in ("final", "jumps")
                            else bool(model_moves))
        self.max_rounds = int(max_rounds)
        self.chunk_size = int(chunk_size)
        if stratify is not None and (not isinstance(stratify, str) or not stratify):
            raise ValueError(f"stratify must name a discrete choice (or be null), got {stratify!r}")
        self.stratify = stratify
        self.stratum_share = float(stratum_share)
        if recycle not in (True, False, "round"):
            raise ValueError(f"recycle must be true, false or 'round', got {recycle!r}")
        self.recycle = recycle
        if isinstance(populations, bool) or not isinstance(populations, (int, np.integer)) \
                or populations < 1:
            raise ValueError(f"populations must be a positive integer, got {populations!r}")
        self.populations = int(populations)
        self.retries = int(retries)
        self.max_value_size = int(max_value_size)

    def options(self) -> dict:
        return {"ess_fraction": self.ess_fraction, "moves": self.moves,
                "max_moves": self.max_moves, "decorrelation": self.decorrelation,
                "redraw_probability": self.redraw_probability,
                "jump_probability": self.jump_probability, "model_moves": self.model_moves,
                "max_rounds": self.max_rounds, "recycle": self.recycle,
                "chunk_size": self.chunk_size,
                **({"stratify": self.stratify, "stratum_share": self.stratum_share}
                   if self.stratify is not None else {}),
                **({"populations": self.populations} if self.populations > 1 else {})}

    # -- what a start distribution other than the prior changes (network-guided SMC) ---------
    @contextlib.contextmanager
    def guide(self, rng: np.random.Generator, observations: dict) -> Iterator[Controller | None]:
        """Inside a work item: the controller that draws traces from the start distribution q
        and scores any trace under it (``score(trace)``: log q of its controlled values), or
        None where q is the prior."""
        yield None

    def kernels(self) -> tuple[tuple[str, Callable[..., Any]], ...]:
        """The Metropolis–Hastings moves of a sweep, by kind, in the order they are tried."""
        return MOVES

    def retired_kernels(self, rounds: list[dict], beta: float) -> frozenset[str]:
        """The kinds of move the round at ``beta`` leaves out, given the rounds so far (their
        ``acceptance_KIND`` and ``tried_KIND``): the simulator's own moves before the last
        round where ``model_moves`` is ``"final"`` (the moves alone where it is ``"jumps"``). Every move leaves each target invariant, so
        which of them a round runs may depend on the population's past."""
        if self.model_moves == "final" and beta < 1.0:
            return frozenset({"model", "jump"})
        if self.model_moves == "jumps" and beta < 1.0:
            return frozenset({"model"})
        return frozenset()

    def scores_moves(self, beta: float, retired: frozenset[str]) -> bool:
        """Whether a move at ``beta`` must score its trace under the guide: q is part of every
        target but the last, and a move of the round may need log q of every particle."""
        return False

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        if num_traces < 2:
            raise ValueError(f"SMC needs at least 2 particles (num_traces), got {num_traces}")
        if self.stratify is not None and self.stratify in observations:
            # A choice the job conditions on (+given) takes one value: no strata to keep alive.
            unstratified = copy.copy(self)
            unstratified.stratify = None
            return SequentialMonteCarlo._run(unstratified, simulator, observations, num_traces,
                                             seed, executor, progress)
        if self.populations > 1:
            return self._run_populations(simulator, observations, num_traces, seed, executor,
                                         progress)
        name = simulator_name(simulator)
        chunks = split(num_traces, self.chunk_size)
        rng = chunk_rng(seed, 0)
        beta, log_evidence, rounds, truncated = 0.0, 0.0, [], False
        parents: list[np.ndarray] = []   # each round's resampling: the genealogy
        threshold = max(self.decorrelation, 3.0 / math.sqrt(num_traces))
        betas_before: list[float] = [0.0]
        with Progress(None, self.progress_label or f"{self.name} rounds", progress) as bar:
            items = [StartDraw(self, observations, seed, c, count, name)
                     for c, (_, count) in enumerate(chunks)]
            drawn = executor.map(_draw_start, items, simulator, bar,
                                 weights=[n for _, n in chunks])
            particles = [p for part in drawn for p in part.particles]
            unknown = _count_unknown(drawn)
            kinds = [kind for kind, _ in self.kernels()]
            start_shares = self._start_shares(particles, name)
            carried = np.zeros(num_traces)   # log weights the particles carry from a resampling
            while True:
                log_inc = np.array([p.log_increment for p in particles])
                step = self._next_step(log_inc, beta, name, carried)
                if len(rounds) + 1 >= self.max_rounds and step < 1.0 - beta:
                    step, truncated = 1.0 - beta, True
                log_w = carried + np.where(np.isfinite(log_inc), step * log_inc, -math.inf)
                log_evidence += logsumexp(log_w) - logsumexp(carried)
                weights_ess = _kish(log_w)
                beta = 1.0 if beta + step >= 1.0 - 1e-12 else beta + step
                if start_shares is None or beta == 1.0:
                    chosen, carried = _systematic(log_w, rng), np.zeros(num_traces)
                else:
                    chosen, carried = _stratified(log_w, [self._stratum(p) for p in particles],
                                                  start_shares, self.stratum_share, rng)
                parents.append(chosen)
                particles = [particles[i] for i in chosen]
                final = beta == 1.0
                start, pool = particles, _pool(particles)
                accepted, tried = np.zeros(len(kinds)), np.zeros(len(kinds))
                sweeps, correlation, batches = 0, 1.0, []
                retired = self.retired_kernels(rounds, beta)
                # Sweep in batches until the particles no longer remember where the round
                # started (copies of one ancestor have gone their own ways), or the bound;
                # one batch at least, also where so few particles set the threshold above 1.
                while sweeps == 0 or (sweeps < self.max_moves and correlation > threshold):
                    batch = min(self.moves, self.max_moves - sweeps)
                    work = [MoveBatch(self, observations, seed, (len(rounds) + 1, sweeps, c),
                                      particles[first:first + count], pool, beta, batch, final,
                                      name, retired)
                            for c, (first, count) in enumerate(chunks)]
                    parts = executor.map(_move_chunk, work, simulator, bar,
                                         weights=[n * batch for _, n in chunks])
                    particles = [p for part in parts for p in part.particles]
                    batches.append(parts)
                    unknown = _count_unknown(parts, unknown)
                    accepted += np.sum([part.accepted for part in parts], axis=0)
                    tried += np.sum([part.tried for part in parts], axis=0)
                    sweeps += batch
                    correlation = _remaining_correlation(start, particles)
                groups, lag = _ancestor_groups(parents)
                rounds.append({
                    "beta": beta, "unique_after_resampling": len(set(map(id, start))),
                    "ess_weights": weights_ess, "sweeps": sweeps,
                    "correlation_with_start": correlation,
                    "ess_log_likelihood": genealogy_ess(
                        np.array([p.log_likelihood for p in particles]),
                        np.arange(num_traces), groups, len(parents)),
                    "ancestor_lag": lag,
                    **({"strata": len({self._stratum(p) for p in start})}
                       if start_shares is not None else {}),
                    **{f"acceptance_{kind}": float(a / t) if t else None
                       for kind, a, t in zip(kinds, accepted, tried)},
                    **{f"tried_{kind}": int(t) for kind, t in zip(kinds, tried)}})
                bar.set_total(bar.done + _rounds_left(betas_before, beta) * num_traces * sweeps)
                betas_before.append(beta)
                bar.show(beta=beta, round=len(rounds), sweeps=sweeps,
                         accept=float(accepted.sum() / max(tried.sum(), 1)))
                if final:
                    kept = batches if self.recycle == "round" else batches[-1:]
                    posterior = Posterior.concat([part.posterior for parts in kept
                                                  for part in parts])
                    recycled_from = np.concatenate(
                        [first + np.asarray(part.recycled_from, dtype=np.int64)
                         for parts in kept for (first, _), part in zip(chunks, parts)])
                    break
        final_log_lik = np.array([p.log_likelihood for p in particles])
        posterior.metadata = {
            "log_evidence": log_evidence,
            "log_evidence_error": math.sqrt(sum(num_traces / r["ess_weights"] - 1.0
                                                for r in rounds) / num_traces),
            "rounds": len(rounds),
            "distinct_ancestors": rounds[-1]["unique_after_resampling"],
            "log_likelihood_range": [float(final_log_lik.min()), float(final_log_lik.max())],
            "betas": [r["beta"] for r in rounds], "round_stats": rounds, "truncated": truncated,
            "acceptance_rate": _acceptance(rounds[-1], kinds), "particles": num_traces,
            **({"guide_unknown_addresses": dict(unknown)} if unknown else {}),
            **({"start_shares": {str(k): v for k, v in start_shares.items()},
                "final_shares": {str(k): n / num_traces for k, n in
                                 Counter(self._stratum(p) for p in particles).items()}}
               if start_shares is not None else {}),
            "genealogy": {"groups": groups.tolist(), "lag": lag, "resamplings": len(parents),
                          "particles": recycled_from.tolist()}}
        return posterior

    def _run_populations(self, simulator: Simulator | SimulatorSpec, observations: dict,
                         num_traces: int, seed: int, executor: Executor,
                         progress: bool | None) -> Posterior:
        """``populations`` runs of one population each, their particles ``num_traces`` split
        evenly, each with a seed drawn from ``(seed, population)``, pooled."""
        count = self.populations
        if num_traces < 2 * count:
            raise ValueError(f"populations={count} needs at least 2 particles each: num_traces "
                             f">= {2 * count}, got {num_traces}")
        runs = []
        for r in range(count):
            single = copy.copy(self)
            single.populations = 1
            single.progress_label = f"{self.name} rounds, population {r + 1} of {count}"
            runs.append(SequentialMonteCarlo._run(
                single, simulator, observations, num_traces // count + (r < num_traces % count),
                int(chunk_rng(seed, r).integers(2 ** 62)), executor, progress))
        return pooled(runs)

    def summarize(self, posterior: Posterior) -> dict:
        """The particles are not independent: copies of one ancestor stay alike until the
        moves set them apart. Each scalar latent's ESS is its posterior variance over the
        variance of its mean estimated from the genealogy (Chan & Lai 2013; Lee & Whiteley
        2018), grouping the particles by their ancestor ``lag`` rounds back (Olsson & Douc
        2019: the deepest lag that keeps enough distinct ancestors for a stable estimate), the
        traces recycled from a particle counting with it; the posterior's ESS is the smallest
        over the latents."""
        meta = posterior.metadata
        genealogy = meta.get("genealogy")
        if genealogy is None or len(genealogy.get("particles", ())) != posterior.num_traces:
            return super().summarize(posterior)   # not this run's traces any more
        groups = np.asarray(genealogy["groups"], dtype=np.int64)
        particles = np.asarray(genealogy["particles"], dtype=np.int64)
        by_latent = {}
        for key in posterior.scalar_names():
            column = posterior.named[key]
            by_latent[key] = genealogy_ess(np.asarray(column.values, dtype=np.float64),
                                           particles[column.index], groups,
                                           genealogy["resamplings"],
                                           posterior.weights[column.index])
        ess = min(by_latent.values()) if by_latent else None
        warnings = low_ess_warnings(ess, len(groups), " (smallest over the latents)",
                                    "use more particles (num_traces) or more sweeps per round "
                                    "(moves, max_moves)")
        if meta.get("truncated"):
            warnings["truncated"] = (f"tempering was cut short after max_rounds={self.max_rounds} "
                                     f"rounds: the last step jumped to the posterior; raise "
                                     f"max_rounds")
        # Each population decorrelates among its own particles, whose number sets the noise.
        runs = meta.get("populations", [meta])
        correlation = max(m["round_stats"][-1]["correlation_with_start"] for m in runs)
        if any(m["round_stats"][-1]["correlation_with_start"] > max(
                self.decorrelation, 3.0 / math.sqrt(m.get("particles", len(groups))))
               for m in runs):
            warnings["not_decorrelated"] = (
                f"the moves of the last round did not decorrelate the particles in "
                f"max_moves={self.max_moves} sweeps (correlation with the round's start "
                f"{correlation:.2f}); the ESS is estimated from the genealogy all the same")
        return {"ess": ess,
                "ess_kind": f"smc genealogy: ancestors {genealogy['lag']} round(s) back"
                            + (f" in {len(runs)} independent populations" if len(runs) > 1
                               else "") + "; smallest over the latents",
                "ess_by_latent": by_latent, "log_evidence": meta["log_evidence"],
                "log_evidence_error": meta["log_evidence_error"],
                "acceptance": meta.get("acceptance_rate"), "rounds": meta["rounds"],
                "warnings": warnings}

    def _stratum(self, particle: Particle) -> Any:
        return particle.choices.get(self.stratify)

    def _start_shares(self, particles: list[Particle], name: str) -> dict | None:
        """Each value of the ``stratify`` choice by its share of the start population (None
        without ``stratify``)."""
        if self.stratify is None or self.stratum_share == 0.0:
            return None
        counts = Counter(self._stratum(p) for p in particles)
        if set(counts) == {None}:
            known = sorted({c for p in particles for c in p.choices})
            raise ValueError(f"stratify={self.stratify!r}: no trace of simulator {name!r} makes "
                             f"a discrete choice of that name; its discrete choices are: "
                             f"{', '.join(known) or 'none'}")
        return {value: count / len(particles) for value, count in counts.items()}

    def _next_step(self, log_inc: np.ndarray, beta: float, name: str,
                   carried: np.ndarray) -> float:
        """The largest tempering step (at most 1 − β) whose incremental weights (the particles'
        ``log_increment`` times the step) keep ``ess_fraction`` of the particles with a
        non-zero weight: the conditional ESS (Zhou, Johansen & Aston 2016) of the weights the
        particles carry, the Kish ESS of the increments where they carry none."""
        finite = np.isfinite(log_inc)
        if not finite.any():
            raise ValueError(f"every particle of simulator {name!r} has zero likelihood for "
                             f"these observations; check that they can be produced at all")
        centred = log_inc[finite] - log_inc[finite].max()
        prior = np.exp(carried[finite] - carried[finite].max())
        target = self.ess_fraction * prior.sum()

        def ess(step: float) -> float:
            w = prior * np.exp(step * centred)
            return float(w.sum() ** 2 / np.sum(w * w / prior))

        high = 1.0 - beta
        if ess(high) >= target:
            return high
        low = 0.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if ess(mid) >= target else (low, mid)
        return max(low, 1e-12)


def pooled(runs: list[Posterior]) -> Posterior:
    """Independent SMC runs of one target as one posterior, each run weighing alike.

    Each run's posterior is a consistent estimate, and so is their average, with the spread
    between runs averaged down. Weighing each run by its evidence estimate instead is also
    consistent, but those estimates spread over many nats where the runs disagree about a
    discrete structure, and the run with the luckiest estimate would decide alone, which is the
    variation the pooling is there to remove. The evidence estimate is the runs' mean (each is
    unbiased for p(y)); the genealogy ESS counts each run's ancestor groups apart."""
    count = len(runs)
    metas = [run.metadata for run in runs]
    posterior = Posterior.concat(runs)
    posterior.log_weights = np.concatenate(
        [run.log_weights - logsumexp(run.log_weights) for run in runs]) - math.log(count)
    log_z = np.array([m["log_evidence"] for m in metas])
    share = np.exp(log_z - logsumexp(log_z))
    sizes = np.array([m["particles"] for m in metas])
    groups, particles, group_offset, particle_offset = [], [], 0, 0
    for m in metas:
        genealogy = m["genealogy"]
        groups.append(np.asarray(genealogy["groups"], dtype=np.int64) + group_offset)
        particles.append(np.asarray(genealogy["particles"], dtype=np.int64) + particle_offset)
        group_offset += max(genealogy["groups"], default=-1) + 1
        particle_offset += m["particles"]
    unknown = sum((Counter(m.get("guide_unknown_addresses", {})) for m in metas), Counter())
    acceptance = [m["acceptance_rate"] for m in metas if m["acceptance_rate"] is not None]

    def shares(key: str) -> dict:
        total: Counter = Counter()
        for m, size in zip(metas, sizes):
            for value, fraction in m[key].items():
                total[value] += fraction * size / sizes.sum()
        return dict(total)

    posterior.metadata = {
        "log_evidence": float(logsumexp(log_z) - math.log(count)),
        "log_evidence_error": float(math.sqrt(sum(
            (s * m["log_evidence_error"]) ** 2 for s, m in zip(share, metas)))),
        "rounds": max(m["rounds"] for m in metas),
        "truncated": any(m["truncated"] for m in metas),
        "acceptance_rate": float(np.mean(acceptance)) if acceptance else None,
        "particles": int(sizes.sum()),
        "populations": [{k: v for k, v in m.items() if k != "genealogy"} for m in metas],
        **({"guide_unknown_addresses": dict(unknown)} if unknown else {}),
        **({"start_shares": shares("start_shares"), "final_shares": shares("final_shares")}
           if "start_shares" in metas[0] else {}),
        "genealogy": {"groups": np.concatenate(groups).tolist(),
                      "lag": max(m["genealogy"]["lag"] for m in metas),
                      "resamplings": max(m["genealogy"]["resamplings"] for m in metas),
                      "particles": np.concatenate(particles).tolist()}}
    return posterior


def _rounds_left(betas: list[float], beta: float) -> float:
    """An estimate of the tempering rounds still to come, for the progress bar's ETA: the
    temperature tends to grow geometrically once the likelihood dominates, so extrapolate the
    last round's ratio (its step, while that is the first one)."""
    if beta >= 1.0:
        return 0.0
    last = betas[-1]
    if last > 0.0 and beta > last:
        return math.log(1.0 / beta) / math.log(beta / last)
    return (1.0 - beta) / max(beta - last, 1e-12)


def _systematic(log_w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = np.exp(log_w - log_w.max())
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    positions = (rng.random() + np.arange(len(w))) / len(w)
    return np.searchsorted(cdf, positions)


def _stratified(log_w: np.ndarray, strata: list, start_shares: dict, share: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Systematic resampling that gives each stratum (value of the ``stratify`` choice) with
    any weight the share ``(1 − share) W + share S`` of the draws, W its share of the weight
    and S of the start population, and within a stratum draws by weight. The chosen particles
    and the log weights they carry: W / that share, which keeps the population properly
    weighted whatever the shares are."""
    w = np.exp(log_w - log_w.max())
    members: dict[Any, list[int]] = {}
    for i, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(i)
    draw = np.zeros(len(w))
    for stratum, index in members.items():
        weight = w[index].sum()
        if weight > 0.0:
            allotted = ((1.0 - share) * weight / w.sum()
                        + share * start_shares.get(stratum, 0.0))
            draw[index] = allotted * w[index] / weight
    with np.errstate(divide="ignore"):
        log_draw = np.log(draw)
    chosen = _systematic(log_draw, rng)
    carried = np.log(w[chosen]) - log_draw[chosen]
    return chosen, carried - carried.max()


def _pool(particles: list[Particle]) -> dict[tuple, list[dict[tuple[str, int], Any]]]:
    """The distinct particles' ordered values by role (:func:`_roles`), grouped by their
    unordered discrete choices."""
    pool: dict[tuple, list[dict[tuple[str, int], Any]]] = {}
    seen: set[int] = set()
    for p in particles:
        if id(p) not in seen:
            seen.add(id(p))
            pool.setdefault(p.key, []).append(
                {role: p.values[address] for role, address in p.roles.items()})
    return pool


@dataclass(frozen=True)
class StartDraw:
    """Work item: ``count`` particles drawn from the start distribution (the prior, or the
    engine's :meth:`~SequentialMonteCarlo.guide`) with the generator of ``index``."""

    engine: "SequentialMonteCarlo"
    observations: dict
    seed: int
    index: int
    count: int
    simulator: str


@dataclass(frozen=True)
class MoveBatch:
    """Work item: ``sweeps`` MH sweeps over some particles at inverse temperature ``beta``;
    ``final`` asks for their traces too (the last round's posterior); moves of the kinds in
    ``retired`` are left out."""

    engine: "SequentialMonteCarlo"
    observations: dict
    seed: int
    index: tuple
    particles: list
    pool: dict
    beta: float
    sweeps: int
    final: bool
    simulator: str
    retired: frozenset = frozenset()


@dataclass(frozen=True)
class Drawn:
    """What a :class:`StartDraw` gives back: the particles, and how many values the guide drew
    from the prior by address (those it has no proposal for; none without a guide)."""

    particles: list
    unknown: dict


@dataclass(frozen=True)
class Moved:
    """What a :class:`MoveBatch` gives back: the particles, accepted and tried moves by kind,
    (final round) the posterior of their traces and which of the batch's particles each
    trace was recycled from, and the guide's prior draws by address."""

    particles: list
    accepted: list
    tried: list
    posterior: Posterior | None
    recycled_from: list
    unknown: dict


def _count_unknown(parts: list, total: Counter | None = None) -> Counter:
    return sum((Counter(part.unknown) for part in parts), total or Counter())


def _guide_unknown(guide: Any) -> dict:
    return dict(getattr(guide, "unknown", {})) if guide is not None else {}


def _draw_start(simulator: Simulator, item: StartDraw, report: Callable[[int], None]) -> Drawn:
    rng = chunk_rng(item.seed, 0, item.index)
    with item.engine.guide(rng, item.observations) as guide:
        controller = guide or MHController(rng, item.observations)
        out = [Particle(trace, drawn_log_start_ratio(trace))
               for trace in run_traces(simulator, controller, item.count, item.engine.retries,
                                       report)]
        controller.check_observations_used(item.simulator)
    return Drawn(out, _guide_unknown(guide))


def drawn_log_start_ratio(trace: Trace) -> float:
    """log q(x) − log p(x) of a trace drawn from the start distribution, from the proposal
    densities its controller recorded (a site drawn from its prior records none: it adds 0)."""
    return float(sum(v.log_proposal - v.log_prob for v in trace.variables
                     if v.kind is SAMPLE and v.log_proposal is not None))


@dataclass
class MoveContext:
    """What the moves of one work item share: the simulator, the controller that reruns it on a
    particle's values, the ``guide`` (the controller that draws from the start distribution q
    and scores a trace under it, ``guide.score(trace)`` = log q(x); None when q is the prior),
    the pool of the population's values, β, the engine and the generator; ``score``: whether
    an accepted move scores its trace under the guide (see :meth:`SequentialMonteCarlo.
    scores_moves`); ``offered``: at β = 1, the last move's acceptance probability and the
    trace it proposed (what the posterior recycles), None where it proposed none."""

    simulator: Simulator
    controller: MHController
    guide: Any
    pool: dict
    beta: float
    engine: SequentialMonteCarlo
    rng: np.random.Generator
    score: bool = False
    offered: tuple[float, Trace] | None = None

    def log_start_ratio(self, trace: Trace) -> float:
        """log q(x) − log p(x) of any trace: the guide's score less the prior density of the
        controlled values (uncontrolled samples are drawn from the prior under both)."""
        return self.guide.score(trace) - sum(v.log_prob for v in trace.variables
                                             if v.kind is SAMPLE and v.control)


def _move_chunk(simulator: Simulator, item: MoveBatch, report: Callable[[int], None]) -> Moved:
    engine = item.engine
    rng = chunk_rng(item.seed, *item.index)
    kernels = engine.kernels()
    accepted, tried = [0] * len(kernels), [0] * len(kernels)
    builder = PosteriorBuilder(engine.max_value_size) if item.final else None
    out, recycled_from = [], []
    with engine.guide(rng, item.observations) as guide:
        context = MoveContext(simulator, MHController(rng, item.observations), guide, item.pool,
                              item.beta, engine, rng,
                              guide is not None and engine.scores_moves(item.beta, item.retired))
        for n, particle in enumerate(item.particles):
            trace, recycled = None, None
            for sweep in range(item.sweeps):
                stepped = False
                if builder is not None and recycled is None and (
                        engine.recycle == "round" or engine.recycle and sweep == item.sweeps - 1):
                    if trace is None:
                        trace = _run(context, particle)[0]
                    recycled = _Recycled()
                for kind, (name, move) in enumerate(kernels):
                    if name in item.retired:
                        continue
                    context.offered, proposal = None, None
                    # Every sweep moves every particle: the prior redraw stands in where no
                    # block step applies (an all-discrete model, a particle alone in its
                    # discrete class).
                    if not (move is _redraw_move and stepped
                            and rng.random() >= engine.redraw_probability):
                        proposal = move(context, particle)
                    if recycled is not None:
                        # Each kind of move weighs as much in every particle, a move left out
                        # or with nothing to propose as one rejected: were a particle's share
                        # split over the moves it could make, where they apply would bias it.
                        recycled.add(trace, context.offered)
                    if proposal is not None:
                        tried[kind] += 1
                        stepped = stepped or move is _block_move
                        if proposal is not False:
                            particle, trace = proposal
                            accepted[kind] += 1
                report(1)
            if builder is not None:
                if trace is None:   # no move accepted this batch: run the particle's values again
                    trace = _run(context, particle)[0]
                # Each batch of the last round weighs as many sweeps as it ran.
                log_sweeps = math.log(item.sweeps) if engine.recycle == "round" else 0.0
                for kept, log_weight in (recycled or _Recycled(trace)).weighted():
                    builder.add(kept, log_weight + log_sweeps)
                    recycled_from.append(n)
            out.append(particle)
        unknown = _guide_unknown(guide)
    return Moved(out, accepted, tried, builder.build() if builder is not None else None,
                 recycled_from, unknown)


class _Recycled:
    """The traces one particle's last sweep leaves to the posterior: per move, the trace it
    proposed with its acceptance probability α as weight, and the trace it was proposed from
    with 1 − α; together they weigh 1."""

    def __init__(self, trace: Trace | None = None) -> None:
        self.weights: dict[int, list] = {}
        if trace is not None:
            self._put(trace, 1.0)

    def _put(self, trace: Trace, weight: float) -> None:
        self.weights.setdefault(id(trace), [trace, 0.0])[1] += weight

    def add(self, current: Trace, offered: tuple[float, Trace] | None) -> None:
        alpha, proposed = offered or (0.0, current)   # rejected before it was scored: α = 0
        self._put(current, 1.0 - alpha)
        if alpha > 0.0:
            self._put(proposed, alpha)

    def __bool__(self) -> bool:
        return bool(self.weights)

    def weighted(self) -> list[tuple[Trace, float]]:
        # Logs taken apart: an α as small as 1e-320 divided by the total would round to 0.
        log_total = math.log(sum(weight for _, weight in self.weights.values()))
        return [(trace, math.log(weight) - log_total)
                for trace, weight in self.weights.values() if weight > 0.0]


def _run(context: MoveContext, particle: Particle, overrides: dict | None = None,
         redraw: str | None = None, avoid: Any = _MISSING,
         values: dict | None = None) -> tuple[Trace, Particle] | None:
    """Run the simulator on the particle's values, with ``overrides`` at some addresses, or
    with the address ``redraw`` drawn afresh from its prior (from the prior less the value
    ``avoid``, if given): ``(trace, its particle)``, or None when an override lies outside its
    support (checked before the run where the particle knows the support, so most impossible
    steps cost nothing). ``values`` replaces the particle's values as those reused (a jump's
    new trace). The particle is not yet scored under the start distribution (:func:`_accept`
    does that where the target needs it)."""
    overrides = overrides or {}
    for address, value in overrides.items():
        support = particle.supports.get(address)
        if address not in particle.values or (support is not None
                                               and not np.all(support.contains(value))):
            return None
    controller = context.controller
    controller.previous, controller.overrides, controller.redraw, controller.avoid = \
        particle.values if values is None else values, overrides, redraw, avoid
    trace = run_trace(context.simulator, controller, context.engine.retries)
    controller.avoid = _MISSING
    if controller.outside:
        return None
    return trace, Particle(trace, 0.0 if context.guide is None else math.nan)


def _roles(values: dict[str, Any]) -> dict[tuple[str, int], str]:
    """The addresses of ``values`` by role: (base, position counted from the last instance).
    A rejection loop draws at one base again and again and keeps the last draws, so counting
    from the last pairs one trace's accepted draws with another's accepted draws, whatever
    the number of iterations each needed; counting from the first would pair them with
    rejected ones, and a step by their difference would be noise at the prior's scale."""
    parts = {}
    for address in values:
        base, _, instance = address.rpartition("__")
        parts[address] = (base, int(instance)) if instance.isdigit() and base else (address, 1)
    last = Counter()
    for base, instance in parts.values():
        last[base] = max(last[base], instance)
    return {(base, last[base] - instance): address for address, (base, instance) in parts.items()}


def _block_move(context: MoveContext, particle: Particle) -> Any:
    """A differential-evolution step: the accepted ``(particle, trace)``, False when rejected,
    None when there was nothing to step."""
    rng = context.rng
    others = context.pool.get(particle.key, ())
    if len(others) < 2:
        return None
    i, j = rng.choice(len(others), size=2, replace=False)
    a, b = others[i], others[j]
    values, roles = particle.values, particle.roles
    differences = {}
    for role, address in roles.items():
        va, vb, value = a.get(role, _MISSING), b.get(role, _MISSING), values[address]
        if va is not _MISSING and vb is not _MISSING and np.shape(va) == np.shape(vb) == np.shape(value):
            differences[role] = np.subtract(va, vb, dtype=np.float64)
    chosen = list(differences)
    if len(chosen) > 1 and rng.random() < 0.5:
        # Half the steps move a random half of the values: where the population's spread is
        # curved in some directions, a step that leaves them alone is accepted far more often.
        keep = rng.random(len(chosen)) < 0.5
        keep[int(rng.integers(len(chosen)))] = True
        chosen = [role for role, k in zip(chosen, keep) if k]
    size = sum(np.size(differences[role]) for role in chosen)
    if size == 0 or not any(np.any(differences[role] != 0) for role in chosen):
        return None
    gamma = 1.0 if rng.random() < context.engine.jump_probability else 2.38 / math.sqrt(2.0 * size)
    stepped = {}
    for role in chosen:
        address = roles[role]
        step = gamma * differences[role]
        integer = address in particle.integer
        value = values[address] + (np.round(step) if integer else step)
        if np.ndim(value) == 0:
            value = int(value) if integer else float(value)
        stepped[address] = value
    run = _run(context, particle, overrides=stepped)
    if run is None:
        return False
    trace, proposed = run
    if proposed.key != particle.key:
        return False
    # The reverse step, from the proposed trace with (b, a), must find the same roles at the
    # same addresses: else the step is not symmetric.
    shared = {role: address for role, address in proposed.roles.items() if role in a and role in b
              and np.shape(a[role]) == np.shape(b[role]) == np.shape(proposed.values[address])}
    if shared != {role: roles[role] for role in differences}:
        return False
    return _accept(context, particle, proposed, trace, 0.0)


def _model_move(context: MoveContext, particle: Particle) -> Any:
    """One of the simulator's own moves (:meth:`Simulator.moves`), chosen uniformly."""
    rng = context.rng
    moves = context.simulator.moves() if context.engine.model_moves else ()
    if not moves:
        return None
    proposal = moves[int(rng.integers(len(moves)))](particle.values, rng)
    if proposal is None:
        return None
    stepped, log_ratio = proposal
    run = _run(context, particle, overrides=stepped)
    if run is None:
        return False
    trace, proposed = run
    if proposed.key != particle.key or proposed.controlled != particle.controlled:
        return False
    return _accept(context, particle, proposed, trace, log_ratio)


def _jump_move(context: MoveContext, particle: Particle) -> Any:
    """One of the simulator's own jumps (:meth:`Simulator.jumps`), chosen uniformly: a move to
    another discrete structure that gives a value at every controlled address of the new trace.
    Nothing is drawn afresh, so the whole prior of both traces enters the ratio; a proposal
    that leaves an address of the new trace to be drawn, or gives one it does not have, is
    rejected."""
    rng = context.rng
    jumps = context.simulator.jumps() if context.engine.model_moves else ()
    if not jumps:
        return None
    proposal = jumps[int(rng.integers(len(jumps)))](particle.values, rng)
    if proposal is None:
        return None
    values, log_ratio = proposal
    trace, proposed = _run(context, particle, values=values)
    if set(proposed.values) != set(values) or not all(
            v.reused for v in trace.variables if v.kind is SAMPLE and v.control):
        return False
    prior = sum(proposed.log_probs.values()) - sum(particle.log_probs.values())
    return _accept(context, particle, proposed, trace, log_ratio + prior, whole_prior=True)


def _redraw_move(context: MoveContext, particle: Particle) -> Any:
    """A lightweight-MH move: one controlled site redrawn from its prior. At an unordered
    discrete site (a categorical choice) the redraw proposes only values other than the
    current one (Liu's 1996 Metropolised Gibbs): a redraw of the same value is a wasted run,
    and a likely value is redrawn most of the time. The proposal p(x') / (1 − p(x)) and its
    reverse leave the term log(1 − p(x)) − log(1 − p(x')) in the acceptance ratio."""
    sites = particle.controlled
    site = sites[int(context.rng.integers(len(sites)))]
    current = dict(particle.key).get(site, _MISSING)
    p_current = math.exp(particle.log_probs[site]) if current is not _MISSING else 1.0
    if p_current > 1.0 - 1e-9:   # continuous, or no other value possible: a plain redraw
        trace, proposed = _run(context, particle, redraw=site)
        other = 0.0
    else:
        trace, proposed = _run(context, particle, redraw=site,
                               avoid=particle.values[site])
        p_new = math.exp(proposed.log_probs[site]) if site in proposed.log_probs else 0.0
        other = math.log1p(-p_current) - math.log1p(-min(p_new, 1.0 - 1e-12))
    if not proposed.controlled:
        return False
    sizes = math.log(len(sites)) - math.log(len(proposed.controlled))
    return _accept(context, particle, proposed, trace, sizes + other)


def _accept(context: MoveContext, current: Particle, proposed: Particle, trace: Trace,
            extra: float, whole_prior: bool = False) -> Any:
    # Lightweight MH with the likelihood tempered: values drawn afresh (and those of the
    # current trace left behind) cancel against their prior proposal, so only reused values
    # enter the prior ratio (a jump draws nothing afresh: ``extra`` holds its whole prior ratio).
    beta, rng = context.beta, context.rng
    log_alpha = extra + beta * (proposed.log_likelihood - current.log_likelihood)
    if not whole_prior:
        log_alpha += sum(v.log_prob - current.log_probs[v.address] for v in trace.variables
                         if v.kind is SAMPLE and v.reused)
    _offer(context, log_alpha, trace)
    if math.isnan(log_alpha) or (log_alpha < 0 and math.log(rng.random()) >= log_alpha):
        return False
    if context.score:
        # From a start distribution q the target is π_β = p L^β · (q / p)^(1−β). Its second
        # factor is tested only for moves that passed the first (delayed acceptance, Christen
        # & Fox 2005: min(1, r₁) · min(1, r₂) keeps detailed balance when each factor's ratio
        # does), so q is scored only for them: scoring costs as much as a simulator run.
        # At β = 1 the factor is 1, but an independence move needs log q − log p.
        proposed.log_start_ratio = context.log_start_ratio(trace)
        if beta < 1.0:
            log_bridge = (1.0 - beta) * (proposed.log_start_ratio - current.log_start_ratio)
            if math.isnan(log_bridge) or (log_bridge < 0
                                          and math.log(rng.random()) >= log_bridge):
                return False
    return proposed, trace


def independence_move(context: MoveContext, particle: Particle) -> Any:
    """A trace drawn afresh from the start distribution q (a network's proposal) as an
    independence Metropolis move: it jumps between discrete structures (decay channels) that
    no local move connects. Derivation: the bridge is π_β(x) ∝ q(x)^(1−β) (p(x) L(x))^β
    = q(x) w(x)^β with w = p L / q; proposing x' ~ q whatever x is, the Metropolis–Hastings
    ratio is π_β(x') q(x) / (π_β(x) q(x')) = w(x')^β / w(x)^β, the importance weights raised
    to β (Tierney 1994; at β = 1 the classic independence sampler)."""
    return network_move(context, particle, lambda guide: contextlib.nullcontext())


def network_move(context: MoveContext, particle: Particle,
                 drawing: Callable[[Any], contextlib.AbstractContextManager]) -> Any:
    """An independence Metropolis move to a trace the guide draws inside ``drawing(guide)``
    (which may fix some of its values; their densities must be the same in both traces),
    tried with ``independence_probability``."""
    if context.guide is None:
        return None
    rng = context.rng
    if rng.random() >= context.engine.independence_probability:
        return None
    with drawing(context.guide):
        trace = run_trace(context.simulator, context.guide, context.engine.retries)
    proposed = Particle(trace, drawn_log_start_ratio(trace))
    log_alpha = context.beta * (proposed.log_increment - particle.log_increment)
    _offer(context, log_alpha, trace)
    if math.isnan(log_alpha) or (log_alpha < 0 and math.log(rng.random()) >= log_alpha):
        return False
    return proposed, trace


def _offer(context: MoveContext, log_alpha: float, trace: Trace) -> None:
    """Record a proposal's acceptance probability for the posterior to recycle: at β = 1
    only, where the target is the posterior (before it, the bridge's factor is still to come)."""
    if context.beta == 1.0:
        context.offered = (0.0 if math.isnan(log_alpha) else math.exp(min(log_alpha, 0.0)),
                           trace)


MOVES = (("block", _block_move), ("model", _model_move), ("jump", _jump_move),
         ("redraw", _redraw_move))


def _kish(log_w: np.ndarray) -> float:
    finite = log_w[np.isfinite(log_w)]
    w = np.exp(finite - finite.max())
    return float(w.sum() ** 2 / np.sum(w * w))


def _acceptance(stats: dict, kinds: list[str]) -> float | None:
    """The fraction of a round's moves, of every kind, that were accepted."""
    tried = sum(stats[f"tried_{kind}"] for kind in kinds)
    accepted = sum(stats[f"tried_{kind}"] * (stats[f"acceptance_{kind}"] or 0.0)
                   for kind in kinds)
    return accepted / tried if tried else None


def _scalars(particle: Particle) -> dict:
    out = {"log_likelihood": particle.log_likelihood}
    for address, value in particle.values.items():
        if np.ndim(value) == 0:
            out[address] = float(value)
    return out


def _remaining_correlation(start: list[Particle], now: list[Particle]) -> float:
    """How much the particles still remember the round's start: the largest correlation,
    across particles, between a value at the start and now (the log-likelihood and every
    scalar controlled value that all particles have and that varied at the start)."""
    before = [_scalars(p) for p in start]
    after = [_scalars(p) for p in now]
    common = set(before[0]).intersection(*before[1:], *after)
    worst = 0.0
    for key in common:
        x = np.array([b[key] for b in before])
        y = np.array([a[key] for a in after])
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.ptp(x) == 0:
            continue
        if np.ptp(y) == 0:
            continue   # every particle agrees now: nothing of the start is left to remember
        worst = max(worst, float(np.corrcoef(x, y)[0, 1]))
    return worst


def _ancestor_groups(parents: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Each particle's ancestor ``lag`` resamplings back, for the deepest lag that leaves
    at least ``MIN_ANCESTORS`` distinct ones (at least lag 1): beyond it the genealogy has
    collapsed onto too few lines for a stable variance estimate."""
    n = len(parents[-1])
    need = min(MIN_ANCESTORS, max(n // 4, 2))
    groups, lag = parents[-1], 1
    for depth in range(2, len(parents) + 1):
        deeper = parents[-depth][groups]
        if len(np.unique(deeper)) < need:
            break
        groups, lag = deeper, depth
    return np.unique(groups, return_inverse=True)[1], lag


def genealogy_ess(values: np.ndarray, index: np.ndarray, groups: np.ndarray,
                  resamplings: int, weights: np.ndarray | None = None) -> float:
    """The effective sample size of the posterior mean of ``values``, held by traces of
    particles ``index`` with ``weights`` (a share of the posterior each; equal shares of the
    N particles where None), given each particle's ancestor group: the variance of the mean
    is estimated from the groups' sums of the traces' weighted centred values (Chan & Lai
    2013; with Lee & Whiteley's 2018 finite-population factor (N / (N − 1))^(resamplings + 1)),
    and ESS = posterior variance / that variance, at most N."""
    n = len(groups)
    values = np.asarray(values, dtype=np.float64)
    weights = (np.full(len(values), 1.0 / n) if weights is None
               else np.asarray(weights, dtype=np.float64))
    share = float(weights.sum())   # of the posterior: the traces that have the value
    # A value every particle shares (an observed quantity tagged by the simulator) has no
    # error to estimate; test it exactly, as its computed variance can be rounding noise.
    if len(values) < 2 or np.ptp(values) == 0 or not share > 0.0:
        return float(n)
    mean = float(np.dot(weights, values)) / share
    variance = float(np.dot(weights, (values - mean) ** 2)) / share
    if not np.isfinite(variance):
        return float(n)
    by_particle = np.bincount(index, weights=weights * (values - mean) / share, minlength=n)
    sums = np.bincount(groups, weights=by_particle)
    factor = (n / (n - 1.0)) ** (resamplings + 1)
    var_mean = factor * float(np.sum(sums * sums))
    return float(n) if var_mean <= 0 else float(min(variance / var_mean, n))
