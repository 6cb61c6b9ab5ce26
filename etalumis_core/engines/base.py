"""What every engine shares: the run's seeds, its chunks of work, the run loop, and the summary
of its own posterior (the application prints what an engine reports and knows none by name)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

from ..controller import Controller
from ..executors import Executor, SerialExecutor
from ..posterior import Posterior, logsumexp
from ..seeding import resolve_seed
from ..simulator import Simulator, SimulatorSpec, simulator_name

log = logging.getLogger(__name__)

# Fewer effective draws than this and a marginal's mean is uncertain by more than a fifth of its
# spread, and its tails are a handful of traces: the run gets a warning.
LOW_ESS = 30
# Observations up to this many numbers are recorded in the posterior's metadata (for ArviZ's
# observed_data group and reports); larger ones are passed to to_arviz when needed.
MAX_RECORDED_OBSERVATION = 4096


class Engine:
    """An inference engine: a controller policy plus a way to split the work.

    ``run`` returns a :class:`Posterior` whose ``metadata`` records the engine, its options,
    the seed and timings, and under ``"summary"`` what :meth:`summarize` says of it.
    """

    name = "engine"

    def options(self) -> dict:
        return {}

    def run(self, simulator: Simulator | SimulatorSpec, observations: Mapping[str, Any],
            num_traces: int, seed: int | None = None, executor: Executor | None = None,
            progress: bool | None = None) -> Posterior:
        if not isinstance(num_traces, (int, np.integer)) or num_traces < 1:
            raise ValueError(f"num_traces must be a positive integer, got {num_traces!r}")
        seed = resolve_seed(seed)
        owned = executor is None
        executor = executor or SerialExecutor()
        counters = executor.stats()
        started = time.perf_counter()
        try:
            posterior = self._run(simulator, dict(observations or {}), int(num_traces), seed,
                                  executor, progress)
        finally:
            if owned:   # closes a simulator it built from a spec (a PPX process, say)
                executor.close()
        elapsed = time.perf_counter() - started
        posterior.metadata.update(engine=self.name, options=self.options(), seed=seed,
                                  num_traces=posterior.num_traces, wall_time_s=elapsed,
                                  traces_per_second=posterior.num_traces / max(elapsed, 1e-12),
                                  simulator=simulator_name(simulator),
                                  executor=executor.name, num_workers=executor.num_workers,
                                  observations={k: np.asarray(v).tolist()
                                                for k, v in dict(observations or {}).items()
                                                if np.size(v) <= MAX_RECORDED_OBSERVATION})
        for key, value in run_counters(counters, executor.stats()).items():
            posterior.metadata.setdefault(key, value)
        posterior.metadata["summary"] = self.summarize(posterior)
        return posterior

    def summarize(self, posterior: Posterior) -> dict:
        """What this engine's posterior is worth, in terms any application can print:

        ``ess`` (the effective sample size this engine stands behind) and ``ess_kind`` (how it
        was estimated), ``ess_by_latent`` (per scalar named latent, of the same kind),
        ``log_evidence`` (None where the engine does not estimate it) and
        ``log_evidence_error`` (its standard error), optional ``acceptance`` and ``rounds``,
        and ``warnings`` (sentences for the user, keyed by what they warn of, so that
        ``calibrate`` can tell which of them single out the events to doubt). This default is
        right for independent weighted draws (importance sampling): Kish's ESS, the mean weight
        as evidence."""
        ess = posterior.kish_ess
        n = posterior.num_traces
        log_evidence = logsumexp(posterior.log_weights) - math.log(max(n, 1))
        error = math.sqrt(max(n / ess - 1.0, 0.0) / n) if ess > 0 else math.inf
        return {"ess": ess, "ess_kind": "kish",
                "ess_by_latent": {k: _marginal_kish(posterior, k) for k in posterior.scalar_names()},
                "log_evidence": log_evidence, "log_evidence_error": error,
                "warnings": low_ess_warnings(ess, n)}

    def _run(self, simulator: Simulator | SimulatorSpec, observations: dict, num_traces: int,
             seed: int, executor: Executor, progress: bool | None) -> Posterior:
        raise NotImplementedError

    def make_controller(self, rng: np.random.Generator, observations: Mapping[str, Any]) -> Controller:
        return Controller(rng, observations)


def run_counters(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict:
    """An executor's stats over one run: numeric counters minus their value before it."""
    out = {}
    for key, value in after.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value - before.get(key, 0)
        out[key] = value
    return out


def _marginal_kish(posterior: Posterior, key: str) -> float:
    try:
        return posterior.marginal(key).ess
    except ValueError:   # only in traces of zero weight
        return 0.0


def low_ess_warnings(ess: float | None, num_traces: int, kind: str = "",
                     remedy: str = "draw more traces or use an engine that proposes better "
                                   "(a trained network, or SMC)") -> dict[str, str]:
    """A warning when the effective sample size is too small to trust the marginals."""
    if ess is None or ess >= LOW_ESS:
        return {}
    return {"low_ess": f"the effective sample size{kind} is {ess:.1f} of {num_traces} traces "
                       f"(under {LOW_ESS}): the marginals rest on a handful of traces and their "
                       f"intervals are not to be trusted; {remedy}"}
