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

from .errors import NonFiniteLogProbError, ObservationError, TraceTooLongError
from .trace import FACTOR, OBSERVE, SAMPLE, TAG, Trace, Variable

_isnan = math.isnan

DEFAULT_MAX_CHOICES = 1_000_000


def as_observation(value: Any) -> Any:
    """Observed values as the distributions expect them: floats, or float64 arrays."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array


def _check_finite(name: str, value: Any) -> None:
    if not bool(np.all(np.isfinite(value))):
        raise ObservationError(
            f"observation {name!r} is not finite ({_summary(value)}): NaN and infinite values "
            f"cannot be conditioned on; fix or drop them before inference")


def _summary(value: Any) -> str:
    if type(value) is float:
        return repr(value)
    bad = ~np.isfinite(value)
    return f"{int(bad.sum())} of its {value.size} values, the first at index " \
           f"{tuple(int(i) for i in np.argwhere(bad)[0])}"


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
        Observed values by name; an ``observe`` whose name is here is conditioned on that value,
        and so is a ``sample`` (a latent fixed by the user, see :meth:`_condition`).
    sample_missing_observations:
        When an ``observe`` has no value (neither given by the simulator nor by name), draw it
        from its distribution (training-data generation and synthetic observations) instead of
        raising an error.

    Observations given by name must be finite and have the shape of the distribution they are
    observed under (its ``batch_shape``): numpy would otherwise broadcast a wrong shape into a
    plausible-looking but wrong posterior. Every trace may record at most ``max_choices``
    messages (samples, observes, tags, factors); :func:`~etalumis_core.simulator.run_trace` sets
    it to the simulator's ``max_choices``, so a loop that never ends fails instead of filling
    the memory.
    """

    max_choices: int = DEFAULT_MAX_CHOICES

    def __init__(self, rng: np.random.Generator, observations: Mapping[str, Any] | None = None,
                 sample_missing_observations: bool = False) -> None:
        self.rng = rng
        self.observations = {k: as_observation(v) for k, v in (observations or {}).items()}
        for name, value in self.observations.items():
            _check_finite(name, value)
        self._given = {k: (v, np.shape(v)) for k, v in self.observations.items()}
        self.sample_missing_observations = sample_missing_observations
        self.observed_names: set[str] = set()
        self.traces_started = -1
        self.start_trace()   # traces_started counts the traces begun since, from 1

    # -- per trace ---------------------------------------------------------------------------
    def start_trace(self) -> None:
        self.traces_started += 1
        self._choices_left = self.max_choices
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
        left = self._choices_left - 1
        self._choices_left = left
        if left < 0:
            self._too_many_choices()
        # As the reference PPX engine (pyprob) does: the instance counts per base and kind.
        counts = self._counts
        key = f"{base}__{kind}"
        n = counts.get(key, 0) + 1
        counts[key] = n
        return f"{key}__{n}"

    def _too_many_choices(self) -> None:
        limit = len(self._variables)
        key, count = max(self._counts.items(), key=lambda item: item[1])
        base = key.rpartition("__")[0]  # counts are kept per base and distribution
        raise TraceTooLongError(
            f"a trace exceeded {limit:,} random choices, {count:,} of them at {base!r} "
            f"(a loop that never ends, e.g. a rejection loop that never accepts?). If the "
            f"simulator really needs more, raise the limit: PythonSimulator(..., "
            f"max_choices=N), or the max_choices attribute of a Simulator subclass")

    def describe_trace(self) -> str:
        """Where the current trace comes from: its number and this controller's generator
        (``chunk_rng(seed, *index)`` of the run's seed and the work item), to reproduce it."""
        seed_seq = getattr(self.rng.bit_generator, "seed_seq", None)
        entropy, key = getattr(seed_seq, "entropy", None), getattr(seed_seq, "spawn_key", ())
        generator = f"chunk_rng({', '.join(map(str, (entropy, *key)))})"
        return f"trace {self.traces_started} drawn from {generator} (the run's seed {entropy})"

    # -- the policy engines override ---------------------------------------------------------
    def propose(self, address: str, distribution: Any, name: str | None) -> tuple[Any, float | None, bool]:
        """Value of a controlled sample: ``(value, log proposal density or None for the prior,
        whether the value was reused from an earlier trace)``."""
        return distribution.sample(self.rng), None, False

    # -- messages ----------------------------------------------------------------------------
    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any:
        if name is not None and name in self._given:
            return self._condition(base, distribution, name)
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
            if name in self._given:
                value, shape = self._given[name]
                # _shape is batch_shape without the property call: this runs every observe.
                if shape != distribution._shape:
                    value = self._fit_shape(address, name, value, distribution)
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

    def _condition(self, base: str, distribution: Any, name: str) -> Any:
        """A sample whose name is given with the observations is conditioned on: it is observed
        at that value, so its probability weighs the trace like a likelihood term and the
        evidence becomes p(y, value). Inference given a decay channel, say, and the channels'
        evidences side by side. A discrete value goes back to the simulator as an integer, as
        a draw would."""
        value = self.observe(base, distribution, None, name)
        if distribution.discrete and bool(np.all(np.mod(value, 1.0) == 0.0)):
            return int(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.int64)
        return value

    def _fit_shape(self, address: str, name: str, value: Any, distribution: Any) -> Any:
        """An observation whose shape differs from the distribution's only by dimensions of
        size one (a remote simulator writing a scalar as ``[1]``) is reshaped; any other
        difference would broadcast into a wrong likelihood, so it is refused."""
        shape = distribution.batch_shape
        given = self._given[name][1]
        if tuple(d for d in given if d != 1) == tuple(d for d in shape if d != 1):
            return np.reshape(value, shape) if shape else float(np.reshape(value, ()))
        raise ObservationError(
            f"observation {name!r} has shape {given}, but the observe statement "
            f"at {address!r} observes a {distribution.name} of shape {distribution.batch_shape}; "
            f"pass a value of shape {distribution.batch_shape}")

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
        """After a trace: every observation given must name an ``observe`` (or a ``sample``)
        of the simulator."""
        unused = set(self.observations) - self.observed_names
        if unused:
            seen = ", ".join(sorted(self.observed_names)) or "none"
            raise ObservationError(
                f"observation(s) {', '.join(sorted(unused))} name no observe or sample "
                f"statement of simulator {simulator_name!r} in this trace; the names it "
                f"observed: {seen}")
