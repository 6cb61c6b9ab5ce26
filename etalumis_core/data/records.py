"""Training examples in memory: traces reduced to what a proposal network learns from.

A *record* keeps the observed values (the network's inputs) and, for every controlled sample in
order, its address, distribution name, value and a few statistics of its prior (mean, standard
deviation, support bounds) that proposal heads use to put their output on the right scale and
support. Records of one trace type (same controlled addresses in the same order) are collated into
a :class:`SubBatch` of arrays, so that a network runs over one control-flow path in one batched
pass. Everything here is numpy; torch is never imported on this path.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..distributions import TYPES
from ..trace import OBSERVE, SAMPLE, Trace

# Stable ids of the distribution types the core has (stored in datasets), from the core's one
# table of distribution types: DIST_NAMES[id] is the type stored as ``id``.
DIST_NAMES = tuple(t.name for t in sorted(TYPES, key=lambda t: t.stored))
DIST_IDS = {t.name: t.stored for t in TYPES}

# Proposal families by support kind: the head that can propose on that support.
FAMILIES = ("real", "interval", "positive", "count", "finite")
FAMILY_IDS = {name: i for i, name in enumerate(FAMILIES)}
_FAMILY_OF_SUPPORT = {"real": "real", "interval": "interval", "unit_interval": "interval",
                      "positive": "positive", "nonnegative_integer": "count",
                      "integer_interval": "finite", "boolean": "finite"}

# Columns of a prior's per-element statistics.
STAT_MEAN, STAT_STD, STAT_LOW, STAT_HIGH = range(4)
NUM_STATS = 4


def family_of(distribution: Any) -> str:
    """The proposal family (``real``, ``interval``, ``positive``, ``count``, ``finite``) of a
    distribution, from its support."""
    return _FAMILY_OF_SUPPORT[distribution.support.kind]


def prior_stats(distribution: Any, size: int) -> np.ndarray:
    """``(size, 4)`` float64: mean, stddev, low, high of each element (0 where undefined;
    non-finite moments replaced by 0 and 1 so that heads can always normalise by them)."""
    if size == 1 and distribution.batch_shape == ():
        # The common case, kept off numpy's slower paths (this runs for every sample).
        mean, std = distribution.mean, distribution.stddev
        support = distribution.support
        low = 0.0 if support.low is None else float(support.low)
        high = 0.0 if support.high is None else float(support.high)
        mean = float(mean) if math.isfinite(mean) else 0.0
        std = float(std) if math.isfinite(std) and std > 0 else 1.0
        return np.array([[mean, std, low, high]])
    out = np.zeros((size, NUM_STATS))
    with np.errstate(all="ignore"):
        mean = np.asarray(distribution.mean, dtype=np.float64).ravel()
        std = np.asarray(distribution.stddev, dtype=np.float64).ravel()
    mean = np.broadcast_to(mean, (size,)) if mean.size == 1 else np.resize(mean, size)
    std = np.broadcast_to(std, (size,)) if std.size == 1 else np.resize(std, size)
    out[:, STAT_MEAN] = np.where(np.isfinite(mean), mean, 0.0)
    out[:, STAT_STD] = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    support = distribution.support
    if support.low is not None:
        out[:, STAT_LOW] = _elementwise(support.low, size)
    if support.high is not None:
        out[:, STAT_HIGH] = _elementwise(support.high, size)
    return out


def _elementwise(x: Any, size: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return np.broadcast_to(x, (size,)) if x.size == 1 else np.resize(x, size)


def support_size(distribution: Any) -> int:
    """Number of values a finite discrete distribution can take (0 for other families)."""
    support = distribution.support
    if support.kind not in ("integer_interval", "boolean"):
        return 0
    return int(np.max(np.asarray(support.high)) - np.min(np.asarray(support.low))) + 1


class SampleRecord:
    """One controlled sample of a trace, as a network sees it."""

    __slots__ = ("address", "dist_name", "family", "shape", "value", "stats", "log_prob",
                 "log_proposal", "support_size")

    def __init__(self, address: str, dist_name: str, family: str, shape: tuple, value: np.ndarray,
                 stats: np.ndarray, log_prob: float, log_proposal: float, support_size: int) -> None:
        self.address = address
        self.dist_name = dist_name
        self.family = family
        self.shape = shape
        self.value = value          # float64, flat (size,)
        self.stats = stats          # float64 (size, 4)
        self.log_prob = log_prob
        self.log_proposal = log_proposal   # nan when drawn from the prior
        self.support_size = support_size


class TraceRecord:
    """What a proposal network learns from one trace: inputs and controlled samples."""

    __slots__ = ("trace_id", "observations", "samples", "log_prior", "log_likelihood",
                 "log_proposal")

    def __init__(self, trace_id: int, observations: dict[str, np.ndarray],
                 samples: list[SampleRecord], log_prior: float = 0.0,
                 log_likelihood: float = 0.0, log_proposal: float = math.nan) -> None:
        self.trace_id = trace_id
        self.observations = observations
        self.samples = samples
        self.log_prior = log_prior
        self.log_likelihood = log_likelihood
        self.log_proposal = log_proposal

    @property
    def trace_type(self) -> tuple[str, ...]:
        return tuple(s.address for s in self.samples)


def observation_key(variable: Any) -> str:
    """Observations are network inputs by name; unnamed ones by address."""
    return variable.name if variable.name is not None else variable.address


def sample_record(variable: Any) -> SampleRecord:
    distribution = variable.distribution
    value = np.asarray(variable.value, dtype=np.float64)
    size = max(value.size, 1)
    log_q = variable.log_proposal
    return SampleRecord(variable.address, distribution.name, family_of(distribution),
                        value.shape, value.reshape(size), prior_stats(distribution, size),
                        float(variable.log_prob), math.nan if log_q is None else float(log_q),
                        support_size(distribution))


def record_from_trace(trace: Trace, trace_id: int = -1) -> TraceRecord:
    """Reduce a trace to a :class:`TraceRecord` (controlled samples and named observations)."""
    observations: dict[str, np.ndarray] = {}
    samples: list[SampleRecord] = []
    log_q = 0.0
    proposed = False
    for v in trace.variables:
        if v.kind is SAMPLE:
            if v.control:
                record = sample_record(v)
                samples.append(record)
                if v.log_proposal is not None:
                    proposed = True
                    log_q += v.log_proposal
                else:
                    log_q += v.log_prob
        elif v.kind is OBSERVE:
            key = observation_key(v)
            if key not in observations:
                observations[key] = np.asarray(v.value, dtype=np.float32)
    return TraceRecord(trace_id, observations, samples, trace.log_prior, trace.log_likelihood,
                       log_q if proposed else math.nan)


class SubBatch:
    """Traces of one trace type, as arrays: ``values[t]`` is ``(b, size_t)`` for step ``t``."""

    __slots__ = ("trace_type", "dist_names", "families", "shapes", "observations", "values",
                 "stats", "support_sizes", "trace_ids")

    def __init__(self, trace_type: tuple[str, ...], dist_names: tuple[str, ...],
                 families: tuple[str, ...], shapes: tuple[tuple, ...],
                 observations: dict[str, np.ndarray], values: list[np.ndarray],
                 stats: list[np.ndarray], support_sizes: tuple[int, ...],
                 trace_ids: np.ndarray) -> None:
        self.trace_type = trace_type
        self.dist_names = dist_names
        self.families = families
        self.shapes = shapes
        self.observations = observations
        self.values = values
        self.stats = stats
        self.support_sizes = support_sizes
        self.trace_ids = trace_ids

    @property
    def size(self) -> int:
        return len(self.trace_ids)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"SubBatch({self.size} traces, {len(self.trace_type)} steps)"


class Batch:
    """A minibatch split by trace type."""

    __slots__ = ("sub_batches",)

    def __init__(self, sub_batches: list[SubBatch]) -> None:
        self.sub_batches = sub_batches

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sub_batches)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(self.sub_batches)

    def sites(self) -> dict[str, tuple[str, str, int, int]]:
        """Every address in the batch: ``address -> (dist name, family, element count, support
        size)`` (the largest support seen), in order of first appearance."""
        out: dict[str, tuple[str, str, int, int]] = {}
        for sb in self.sub_batches:
            for t, address in enumerate(sb.trace_type):
                size = int(np.prod(sb.shapes[t])) if sb.shapes[t] else 1
                known = out.get(address)
                k = sb.support_sizes[t]
                if known is None or k > known[3]:
                    out[address] = (sb.dist_names[t], sb.families[t], size, k)
        return out

    def __repr__(self) -> str:
        return f"Batch({self.size} traces, {len(self.sub_batches)} trace types)"


def collate(records: Sequence[TraceRecord], observation_names: Sequence[str] | None = None) -> Batch:
    """Group records by trace type (first-appearance order, so deterministic) into arrays."""
    groups: dict[tuple, list[TraceRecord]] = {}
    for r in records:
        key = tuple((s.address, s.shape) for s in r.samples)
        groups.setdefault(key, []).append(r)
    subs = []
    for key, rs in groups.items():
        first = rs[0]
        names = observation_names if observation_names is not None else sorted(first.observations)
        observations = {n: np.stack([r.observations[n] for r in rs]).astype(np.float32, copy=False)
                        for n in names}
        steps = len(first.samples)
        values = [np.stack([r.samples[t].value for r in rs]) for t in range(steps)]
        stats = [np.stack([r.samples[t].stats for r in rs]) for t in range(steps)]
        support = tuple(max(r.samples[t].support_size for r in rs) for t in range(steps))
        subs.append(SubBatch(tuple(a for a, _ in key),
                             tuple(s.dist_name for s in first.samples),
                             tuple(s.family for s in first.samples),
                             tuple(s for _, s in key), observations, values, stats, support,
                             np.array([r.trace_id for r in rs], dtype=np.int64)))
    return Batch(subs)


def observation_shapes_of(records: Iterable[TraceRecord]) -> dict[str, tuple]:
    for r in records:
        return {k: tuple(np.shape(v)) for k, v in sorted(r.observations.items())}
    return {}


def as_observation_arrays(observations: Mapping[str, Any], shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Observed values given to an engine, as float32 arrays of the shapes a network expects."""
    out = {}
    for name, shape in shapes.items():
        if name not in observations:
            raise KeyError(name)
        value = np.asarray(observations[name], dtype=np.float32)
        if value.size != int(np.prod(shape)):
            raise ValueError(f"observation {name!r} has shape {value.shape}; the network was "
                             f"trained on shape {tuple(shape)}")
        out[name] = value.reshape(shape)
    return out
