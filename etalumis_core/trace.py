"""Execution traces: every message a simulator sent during one run, in order.

A trace is the unit every engine produces and every consumer (posterior, dataset, trainer)
reads. It imports nothing from the rest of the core on purpose: datasets and the PPX layer use it
without pulling in engines.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable

SAMPLE = "sample"
OBSERVE = "observe"
TAG = "tag"
FACTOR = "factor"


class Variable:
    """One message of a trace.

    ``kind`` is one of ``sample``, ``observe``, ``tag``, ``factor``. ``log_prob`` is the log
    density of ``value`` under ``distribution`` (for a factor: the log weight it adds; for a tag:
    0). ``log_proposal`` is the log density under the distribution the engine actually drew from,
    when that was not the prior. ``reused`` marks a value carried over from a previous trace
    (Metropolis–Hastings).
    """

    __slots__ = ("kind", "address", "name", "distribution", "value", "control", "log_prob",
                 "log_proposal", "reused")

    def __init__(self, kind: str, address: str, name: str | None, distribution: Any,
                 value: Any, control: bool, log_prob: float, log_proposal: float | None = None,
                 reused: bool = False) -> None:
        self.kind = kind
        self.address = address
        self.name = name
        self.distribution = distribution
        self.value = value
        self.control = control
        self.log_prob = log_prob
        self.log_proposal = log_proposal
        self.reused = reused

    @property
    def observed(self) -> bool:
        return self.kind == OBSERVE

    def __repr__(self) -> str:
        return (f"Variable({self.kind}, {self.address!r}, name={self.name!r}, "
                f"value={self.value!r}, log_prob={self.log_prob:.4g})")


def trace_type_hash(addresses: Iterable[str]) -> str:
    """A stable (process- and version-independent) 16-hex-digit hash of a trace type."""
    digest = hashlib.blake2b("\n".join(addresses).encode(), digest_size=8)
    return digest.hexdigest()


class Trace:
    """The record of one simulator run.

    ``log_prior`` sums the log densities of every sampled value, ``log_likelihood`` those of the
    observed values plus every factor, and ``log_weight`` is the importance weight the engine
    assigned (log likelihood for prior sampling, prior/proposal ratio times likelihood for
    inference compilation).
    """

    __slots__ = ("variables", "result", "log_prior", "log_likelihood", "log_weight",
                 "controlled_addresses", "_by_address")

    def __init__(self, variables: list[Variable], result: Any, log_prior: float,
                 log_likelihood: float, log_weight: float,
                 controlled_addresses: tuple[str, ...]) -> None:
        self.variables = variables
        self.result = result
        self.log_prior = log_prior
        self.log_likelihood = log_likelihood
        self.log_weight = log_weight
        self.controlled_addresses = controlled_addresses
        self._by_address: dict[str, Variable] | None = None

    @property
    def log_joint(self) -> float:
        return self.log_prior + self.log_likelihood

    @property
    def trace_type(self) -> tuple[str, ...]:
        """The sequence of controlled addresses: traces of one type share their control flow."""
        return self.controlled_addresses

    @property
    def trace_type_hash(self) -> str:
        return trace_type_hash(self.controlled_addresses)

    def by_address(self) -> dict[str, Variable]:
        if self._by_address is None:
            self._by_address = {v.address: v for v in self.variables}
        return self._by_address

    def __getitem__(self, address: str) -> Variable:
        return self.by_address()[address]

    def samples(self, controlled_only: bool = False) -> list[Variable]:
        return [v for v in self.variables
                if v.kind == SAMPLE and (v.control or not controlled_only)]

    def observations(self) -> list[Variable]:
        return [v for v in self.variables if v.kind == OBSERVE]

    def named(self, name: str) -> Variable:
        """The first variable with ``name``; a KeyError lists the names this trace has."""
        for v in self.variables:
            if v.name == name:
                return v
        names = sorted({v.name for v in self.variables if v.name})
        raise KeyError(f"trace has no variable named {name!r}; it has: {', '.join(names)}")

    def values_by_name(self) -> dict[str, Any]:
        """First value of each named variable (samples, observations and tags)."""
        out: dict[str, Any] = {}
        for v in self.variables:
            if v.name and v.name not in out and v.kind != FACTOR:
                out[v.name] = v.value
        return out

    def __len__(self) -> int:
        return len(self.variables)

    def __repr__(self) -> str:
        return (f"Trace({len(self.variables)} variables, {len(self.controlled_addresses)} "
                f"controlled, log_weight={self.log_weight:.4g})")


def is_finite(x: float) -> bool:
    return not (math.isinf(x) or math.isnan(x))
