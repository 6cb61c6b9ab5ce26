"""Single-site Metropolis–Hastings over whole execution traces.

Lightweight MH (Wingate, Stuhlmüller & Goodman 2011): pick one controlled address of the current
trace uniformly, propose a new value there, rerun the simulator reusing every other value whose
address recurs (and lies in the new distribution's support), drawing any new address from its
prior. Because control flow may add or drop addresses, the acceptance ratio carries the
trace-size and fresh/stale terms::

    log α = log p(x') − log p(x) + log |x| − log |x'| + log q(stale in x) − log q(fresh in x')

where |x| counts controlled sample sites, *fresh* are values drawn anew in x' (the proposed
site when redrawn from its prior, and new addresses), and *stale* are values of x not carried
into x'. Random-walk MH additionally proposes a Gaussian step at continuous sites (symmetric,
so no kernel term), mixed with prior redraws with probability ``prior_probability``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..controller import Controller
from ..executors import Executor
from ..posterior import Posterior, PosteriorBuilder
from ..progress import Progress
from ..simulator import Simulator, SimulatorSpec, run_trace, run_traces, simulator_name
from ..trace import SAMPLE, Trace
from ..seeding import chunk_rng
from .base import Engine, low_ess_warnings

_MISSING = object()


class MHController(Controller):
    """Reuses the previous trace's values, except where a move changes them: ``overrides``
    holds new values at some addresses (random-walk and block steps), ``redraw`` names one
    address drawn afresh from its prior (other than ``avoid``, when that is set). An override outside the support of the distribution
    met at its address sets ``outside`` (the move must be rejected) and the previous value is
    used instead, so the simulator never sees an impossible value."""

    def __init__(self, rng: np.random.Generator, observations: Mapping[str, Any]) -> None:
        super().__init__(rng, observations)
        self.previous: dict[str, Any] = {}
        self.overrides: dict[str, Any] = {}
        self.redraw: str | None = None
        self.avoid: Any = _MISSING   # a redraw proposes values other than this one

    def start_trace(self) -> None:
        super().start_trace()
        self.outside = False

    def propose(self, address: str, distribution: Any, name: str | None) -> tuple[Any, float | None, bool]:
        if address == self.redraw:
            value = distribution.sample(self.rng)
            while self.avoid is not _MISSING and np.array_equal(value, self.avoid):
                value = distribution.sample(self.rng)   # the caller checked another is possible
            return value, None, False
        value = self.overrides.get(address, _MISSING)
        if value is not _MISSING:
            if _in_support(distribution, value):
                return value, None, True
            self.outside = True
        value = self.previous.get(address, _MISSING)
        if value is not _MISSING and _in_support(distribution, value):
            return value, None, True
        return distribution.sample(self.rng), None, False


def _in_support(distribution: Any, value: Any) -> bool:
    log_prob = distribution.log_prob(value)
    return bool(np.all(np.isfinite(log_prob)))


def _controlled_values(trace: Trace) -> dict[str, Any]:
    return {v.address: v.value for v in trace.variables if v.kind is SAMPLE and v.control}


def acceptance_log_ratio(old: Trace, new: Trace) -> float:
    """The lightweight-MH log acceptance ratio (see the module docstring)."""
    if not new.controlled_addresses:
        return -math.inf
    reused = set()
    fresh = 0.0
    for v in new.variables:
        if v.kind is SAMPLE:
            if v.reused:
                reused.add(v.address)
            else:
                fresh += v.log_prob
    stale = sum(v.log_prob for v in old.variables
                if v.kind is SAMPLE and v.address not in reused)
    return (new.log_joint - old.log_joint
            + math.log(len(old.controlled_addresses)) - math.log(len(new.controlled_addresses))
            + stale - fresh)


class LightweightMH(Engine):
    """Single-site MH with proposals from the prior.

    Parameters
    ----------
    chains:
        Independent chains; ``num_traces`` kept draws are divided among them.
    burn_in:
        Steps discarded at the start of each chain.
    thinning:
        Keep every ``thinning``-th state.
    initial_traces:
        Each chain starts from the most likely of this many prior draws. With a sharp
        likelihood a chain started at a random prior draw can take very long to find the
        posterior's mass; any start is valid, burn-in then forgets it.
    """

    name = "lmh"

    def __init__(self, chains: int = 1, burn_in: int = 0, thinning: int = 1,
                 initial_traces: int = 1, retries: int = 3, max_value_size: int = 4096) -> None:
        if chains < 1 or burn_in < 0 or thinning < 1 or initial_traces < 1:
            raise ValueError(f"need chains >= 1, burn_in >= 0, thinning >= 1, initial_traces >= 1; "
                             f"got chains={chains}, burn_in={burn_in}, thinning={thinning}, "
                             f"initial_traces={initial_traces}")
        self.chains = int(chains)
        self.burn_in = int(burn_in)
        self.thinning = int(thinning)
        self.initial_traces = int(initial_traces)
        self.retries = int(retries)
        self.max_value_size = int(max_value_size)

    def options(self) -> dict:
        return {"chains": self.chains, "burn_in": self.burn_in, "thinning": self.thinning,
                "initial_traces": self.initial_traces}

    def step_value(self, variable: Any, rng: np.random.Generator) -> Any:
        """The proposed value at the chosen site, or ``_MISSING`` to redraw from the prior."""
        return _MISSING

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        per_chain = [num_traces // self.chains + (c < num_traces % self.chains)
                     for c in range(self.chains)]
        items = [Chain(self, observations, seed, c, n, simulator_name(simulator))
                 for c, n in enumerate(per_chain) if n]
        steps = [self.initial_traces - 1 + self.burn_in + n * self.thinning
                 for n in per_chain if n]
        with Progress(sum(steps), f"{self.name} chains", progress, unit="step") as bar:
            parts = executor.map(_run_chain, items, simulator, bar, weights=steps)
        posterior = Posterior.concat(parts)
        accepted = [p.metadata["acceptance_rate"] for p in parts]
        posterior.metadata = {"mcmc": True, "acceptance_rate": float(np.mean(accepted)),
                              "acceptance_rate_per_chain": accepted}
        if len(parts) > 1:
            posterior.metadata["r_hat"] = _r_hats(posterior)
        return posterior

    def summarize(self, posterior: Posterior) -> dict:
        """Draws along a chain are correlated, so Kish's ESS (every draw) says nothing: the ESS
        of each scalar latent is the autocorrelation-based one summed over chains, and the
        posterior's is the smallest of them. MCMC estimates no evidence."""
        by_latent = {}
        for key in posterior.scalar_names():
            column = posterior.named[key]
            if len(column.index):
                by_latent[key] = posterior.mcmc_ess(key)
        ess = min(by_latent.values()) if by_latent else None
        warnings = low_ess_warnings(ess, posterior.num_traces, " (smallest over the latents)")
        r_hat = posterior.metadata.get("r_hat") or {}
        unconverged = {k: v for k, v in r_hat.items() if not v < 1.1}
        if unconverged:
            worst = ", ".join(f"{k} ({v:.2f})" for k, v in sorted(unconverged.items(),
                                                                  key=lambda kv: -kv[1])[:5])
            warnings["chains_disagree"] = (f"the chains disagree (R-hat above 1.1) on {worst}: "
                                           f"their draws are not yet a posterior sample; run "
                                           f"longer chains or use engine=ic")
        return {"ess": ess, "ess_kind": "mcmc: autocorrelation, summed over chains; smallest "
                                        "over the latents",
                "ess_by_latent": by_latent, "log_evidence": None, "log_evidence_error": None,
                "acceptance": posterior.metadata.get("acceptance_rate"), "r_hat": r_hat,
                "warnings": warnings}


class RandomWalkMH(LightweightMH):
    """Single-site MH with Gaussian random-walk steps at continuous sites.

    Parameters
    ----------
    prior_probability:
        Chance of redrawing the site from its prior instead of stepping (always, at discrete
        sites), which keeps the chain able to jump between modes.
    scale:
        Step size as a fraction of the site's prior standard deviation.
    """

    name = "rmh"

    def __init__(self, chains: int = 1, burn_in: int = 0, thinning: int = 1,
                 initial_traces: int = 1, prior_probability: float = 0.2, scale: float = 0.2,
                 retries: int = 3, max_value_size: int = 4096) -> None:
        super().__init__(chains, burn_in, thinning, initial_traces, retries, max_value_size)
        if not 0.0 <= prior_probability <= 1.0 or not scale > 0:
            raise ValueError(f"need 0 <= prior_probability <= 1 and scale > 0; got "
                             f"prior_probability={prior_probability}, scale={scale}")
        self.prior_probability = float(prior_probability)
        self.scale = float(scale)

    def options(self) -> dict:
        return {**super().options(), "prior_probability": self.prior_probability,
                "scale": self.scale}

    def step_value(self, variable: Any, rng: np.random.Generator) -> Any:
        distribution = variable.distribution
        if distribution.discrete or rng.random() < self.prior_probability:
            return _MISSING
        width = distribution.stddev
        width = np.where(np.isfinite(width) & (width > 0), width, 1.0)
        value = variable.value
        step = rng.normal(0.0, self.scale * width, size=np.shape(value))
        return float(value + step) if np.ndim(value) == 0 else value + step


def _r_hats(posterior: Posterior) -> dict[str, float]:
    """Split-chain R-hat of every named scalar latent variable that every chain has (a
    variable some chains never visit has no meaningful R-hat)."""
    out = {}
    chains = len(np.unique(posterior.chain))
    for name, column in posterior.named.items():
        if column.kind != SAMPLE or column.ragged or column.values.ndim != 1:
            continue
        if len(np.unique(posterior.chain[column.index])) < chains:
            continue
        try:
            out[name] = posterior.r_hat(name)
        except ValueError:   # chains too short
            continue
    return out


@dataclass(frozen=True)
class Chain:
    """One work item: chain number ``chain``, keeping ``count`` draws."""

    engine: LightweightMH
    observations: dict
    seed: int
    chain: int
    count: int
    simulator: str


def _run_chain(simulator: Simulator, item: Chain, report: Callable[[int], None]) -> Posterior:
    engine, name = item.engine, item.simulator
    rng = chunk_rng(item.seed, item.chain)
    controller = MHController(rng, item.observations)
    builder = PosteriorBuilder(engine.max_value_size, chain=item.chain)
    retries = engine.retries
    current = run_trace(simulator, controller, retries)
    controller.check_observations_used(name)
    for candidate in run_traces(simulator, controller, engine.initial_traces - 1, retries, report):
        if candidate.log_weight > current.log_weight:
            current = candidate
    if not current.controlled_addresses:
        raise ValueError(f"simulator {name!r} has no controlled random choices: MH has nothing "
                         f"to propose; use importance sampling")
    accepted = 0
    total_steps = engine.burn_in + item.count * engine.thinning
    for step in range(total_steps):
        addresses = current.controlled_addresses
        site = addresses[int(rng.integers(len(addresses)))]
        controller.previous = _controlled_values(current)
        value = engine.step_value(current[site], rng)
        controller.overrides = {} if value is _MISSING else {site: value}
        controller.redraw = site if value is _MISSING else None
        proposal = run_trace(simulator, controller, retries)
        log_alpha = -math.inf if controller.outside else acceptance_log_ratio(current, proposal)
        if log_alpha >= 0 or math.log(rng.random()) < log_alpha:
            current = proposal
            accepted += 1
        kept = step - engine.burn_in
        if kept >= 0 and kept % engine.thinning == 0:
            builder.add(current, 0.0)
        report(1)
    return builder.build({"acceptance_rate": accepted / max(total_steps, 1)})
