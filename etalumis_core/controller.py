"""The controller: one object answers every message of one simulator run and records the trace.

Engines differ only in :meth:`Controller.propose`, which decides the value of each controlled
``sample``: the prior (importance sampling, dataset generation), the previous trace (MH), or a
neural proposal (inference compilation). In-process Python simulators reach the controller
through :mod:`etalumis_core.runtime`; remote simulators through the PPX engine side. Both pass the
*base* address; the controller appends the distribution's ``address_suffix`` and the instance
counter, exactly as the reference PPX engine (pyprob 1.5.0) does.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .errors import NonFiniteLogProbError, ObservationError
from .trace import FACTOR, OBSERVE, SAMPLE, TAG, Trace, Variable

_isnan = math.isnan


def as_observation(value: Any) -> Any:
    """Observed values as the distributions expect them: floats, or float64 arrays."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array


def _total(log_prob: Any) -> float:
    """Batched distributions give elementwise log-probabilities; a trace needs their sum."""
    return log_prob if type(log_prob) is float else float(np.sum(log_prob))


class Controller:
    """Answers ``sample``/``observe``/``tag``/``factor`` for one trace at a time.

    Parameters
    ----------
    rng:
        The generator every random decision of this controller draws from.
    observations:
        Observed values by name; an ``observe`` whose name is here is conditioned on that value.
    sample_missing_observations:
        When an ``observe`` has no value (neither given by the simulator nor by name), draw it
        from its distribution (training-data generation and synthetic observations) instead of
        raising an error.
    """

    def __init__(self, rng: np.random.Generator, observations: Mapping[str, Any] | None = None,
                 sample_missing_observations: bool = False) -> None:
        self.rng = rng
        self.observations = {k: as_observation(v) for k, v in (observations or {}).items()}
        self.sample_missing_observations = sample_missing_observations
        self.observed_names: set[str] = set()
        self.start_trace()

    # -- per trace ---------------------------------------------------------------------------
    def start_trace(self) -> None:
        self._variables: list[Variable] = []
        self._counts: dict[str, int] = {}
        self._controlled: list[str] = []
        self._log_prior = 0.0
        self._log_likelihood = 0.0
        self._log_proposal_ratio = 0.0

    def end_trace(self, result: Any) -> Trace:
        log_weight = self._log_likelihood + self._log_proposal_ratio
        return Trace(self._variables, result, self._log_prior, self._log_likelihood, log_weight,
                     tuple(self._controlled))

    def _address(self, base: str, kind: str) -> str:
        # As the reference PPX engine (pyprob) does: the instance counts per base and kind.
        counts = self._counts
        key = f"{base}__{kind}"
        n = counts.get(key, 0) + 1
        counts[key] = n
        return f"{key}__{n}"

    # -- the policy engines override ---------------------------------------------------------
    def propose(self, address: str, distribution: Any, name: str | None) -> tuple[Any, float | None, bool]:
        """Value of a controlled sample: ``(value, log proposal density or None for the prior,
        whether the value was reused from an earlier trace)``."""
        return distribution.sample(self.rng), None, False

    # -- messages ----------------------------------------------------------------------------
    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any:
        address = self._address(base, distribution.address_suffix)
        if control:
            value, log_q, reused = self.propose(address, distribution, name)
            self._controlled.append(address)
        else:
            value, log_q, reused = distribution.sample(self.rng), None, False
        log_prob = _total(distribution.log_prob(value))
        if _isnan(log_prob) or log_prob == math.inf:
            raise NonFiniteLogProbError(
                f"sample at {address!r} (name {name!r}): {distribution!r}.log_prob({value!r}) is "
                f"{log_prob}; check the distribution's parameters")
        self._log_prior += log_prob
        if log_q is not None:
            self._log_proposal_ratio += log_prob - log_q
        self._variables.append(Variable(SAMPLE, address, name, distribution, value, control,
                                        log_prob, log_q, reused))
        return value

    def observe(self, base: str, distribution: Any, value: Any, name: str | None) -> Any:
        address = self._address(base, distribution.address_suffix)
        if name is not None:
            self.observed_names.add(name)
            if name in self.observations:
                value = self.observations[name]
        if value is None:
            if not self.sample_missing_observations:
                known = ", ".join(sorted(self.observations)) or "none"
                raise ObservationError(
                    f"observe at {address!r} (name {name!r}) has no value: pass it as "
                    f"observe={{{name!r}: ...}} (observations given: {known})")
            value = distribution.sample(self.rng)
        log_prob = _total(distribution.log_prob(value))
        if _isnan(log_prob) or log_prob == math.inf:
            raise NonFiniteLogProbError(
                f"observe at {address!r} (name {name!r}): log-likelihood is {log_prob} under "
                f"{distribution!r}; check the distribution's parameters and the observed value")
        self._log_likelihood += log_prob
        self._variables.append(Variable(OBSERVE, address, name, distribution, value, False,
                                        log_prob))
        return value

    def tag(self, base: str, value: Any, name: str | None) -> None:
        self._variables.append(Variable(TAG, self._address(base, "tag"), name, None, value,
                                        False, 0.0))

    def factor(self, base: str, log_weight: float, name: str | None) -> None:
        if _isnan(log_weight) or log_weight == math.inf:
            raise NonFiniteLogProbError(
                f"factor at {base!r} (name {name!r}) has log weight {log_weight}")
        self._log_likelihood += log_weight
        self._variables.append(Variable(FACTOR, self._address(base, "factor"), name, None,
                                        log_weight, False, log_weight))

    def check_observations_used(self, simulator_name: str) -> None:
        """After a trace: every observation given must name an ``observe`` of the simulator."""
        unused = set(self.observations) - self.observed_names
        if unused:
            seen = ", ".join(sorted(self.observed_names)) or "none"
            raise ObservationError(
                f"observation(s) {', '.join(sorted(unused))} name no observe statement of "
                f"simulator {simulator_name!r}; its observe names are: {seen}")
