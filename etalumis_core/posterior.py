"""Posteriors: weighted traces, stored by column.

Every trace contributes a log weight (an importance weight, or 0 for an MCMC draw), its trace
type and the values of its latent variables. Values are kept per address and per name, as arrays,
so that a million traces cost a few arrays rather than a million objects. Which values are kept:
every controlled sample, every named sample and every tag, up to ``max_value_size`` elements each
(uncontrolled, unnamed samples are nuisance randomness such as shower positions).

Marginals by *name* take the first occurrence of the name in each trace; marginals by *address*
take that exact address. Weights of a marginal are renormalised over the traces in which the
variable exists.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from .trace import SAMPLE, TAG, Trace, trace_type_hash

FORMAT_VERSION = 1
# Metadata an engine writes about the whole sample it drew; a subset or a combination of
# posteriors is another sample, so these do not carry over.
_SAMPLE_KEYS = ("summary", "genealogy")


def logsumexp(x: np.ndarray) -> float:
    """log Σ exp(x), stable for large and -inf entries (-inf for an empty array)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    m = float(np.max(x))
    if m == -math.inf:
        return -math.inf
    return m + math.log(float(np.sum(np.exp(x - m))))


def normalized_weights(log_weights: np.ndarray) -> np.ndarray:
    total = logsumexp(log_weights)
    if total == -math.inf:
        raise ValueError("every trace has zero weight (log weight -inf): the observation is "
                         "impossible under every trace drawn; check the observed values and the "
                         "likelihood's support, or draw more traces")
    return np.exp(log_weights - total)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: Any) -> Any:
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) - 0.5 * w
    cdf /= cdf[-1] + 0.5 * w[-1] if cdf.size else 1.0
    return np.interp(q, cdf, v)


def _autocorrelation(x: np.ndarray) -> np.ndarray | None:
    """Autocorrelation at every lag (FFT); None for a constant or too short chain."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    if n < 4 or not np.any(x):
        return None
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    return acf / acf[0]


class Column:
    """Values of one variable (an address or a name) across the traces that have it."""

    __slots__ = ("key", "name", "kind", "distribution", "discrete", "index", "values")

    def __init__(self, key: str, name: str | None, kind: str, distribution: str | None,
                 discrete: bool, index: np.ndarray, values: Any) -> None:
        self.key = key
        self.name = name
        self.kind = kind
        self.distribution = distribution
        self.discrete = discrete
        self.index = index
        self.values = values   # ndarray (n, *shape), or a list of arrays when shapes vary

    @property
    def ragged(self) -> bool:
        return isinstance(self.values, list)

    def meta(self) -> dict:
        return {"key": self.key, "name": self.name, "kind": self.kind,
                "distribution": self.distribution, "discrete": self.discrete}


class Marginal:
    """The weighted sample of one variable: statistics, quantiles, histograms, tables."""

    def __init__(self, key: str, values: np.ndarray, weights: np.ndarray, discrete: bool,
                 coverage: float) -> None:
        self.key = key
        self.values = values
        self.weights = weights
        self.discrete = discrete
        self.coverage = coverage  # fraction of the posterior mass in traces that have it

    @property
    def mean(self) -> Any:
        return np.tensordot(self.weights, self.values, axes=(0, 0))

    @property
    def variance(self) -> Any:
        centred = self.values - self.mean
        return np.tensordot(self.weights, centred * centred, axes=(0, 0))

    @property
    def stddev(self) -> Any:
        return np.sqrt(self.variance)

    @property
    def ess(self) -> float:
        return float(1.0 / np.sum(self.weights ** 2))

    def quantile(self, q: Any) -> Any:
        """Weighted quantile(s); for array-valued variables, elementwise."""
        if self.values.ndim == 1:
            return _weighted_quantile(self.values, self.weights, q)
        flat = self.values.reshape(len(self.values), -1)
        out = np.stack([_weighted_quantile(flat[:, j], self.weights, q)
                        for j in range(flat.shape[1])], axis=-1)
        return out.reshape(np.shape(q) + self.values.shape[1:])

    def histogram(self, bins: Any = 30, range: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Weighted density histogram: (densities, bin edges)."""
        return np.histogram(self.values, bins=bins, range=range, weights=self.weights,
                            density=True)

    def probabilities(self) -> dict[Any, float]:
        """Posterior probability of each value (discrete variables), most probable first."""
        table: dict[Any, float] = {}
        for v, w in zip(self.values.tolist(), self.weights.tolist()):
            table[v] = table.get(v, 0.0) + w
        return dict(sorted(table.items(), key=lambda kv: -kv[1]))

    def mode(self) -> Any:
        return next(iter(self.probabilities()))

    def summary(self) -> dict:
        out: dict[str, Any] = {"coverage": self.coverage, "ess": self.ess}
        if self.values.ndim == 1:
            q = self.quantile([0.05, 0.25, 0.5, 0.75, 0.95])
            out.update(mean=float(self.mean), stddev=float(self.stddev),
                       quantiles={"5%": float(q[0]), "25%": float(q[1]), "50%": float(q[2]),
                                  "75%": float(q[3]), "95%": float(q[4])})
            if self.discrete:
                out["probabilities"] = {str(k): v for k, v in
                                        list(self.probabilities().items())[:20]}
        else:
            out.update(shape=list(self.values.shape[1:]),
                       mean=np.asarray(self.mean).tolist() if self.values[0].size <= 64 else None)
        return out


class Posterior:
    """Weighted traces by column. Build with :class:`PosteriorBuilder` or :meth:`load`."""

    def __init__(self, log_weights: np.ndarray, chain: np.ndarray, trace_type_id: np.ndarray,
                 trace_types: list[tuple[str, ...]], columns: dict[str, Column],
                 named: dict[str, Column], results: Column | None,
                 metadata: dict | None = None, log_likelihood: np.ndarray | None = None) -> None:
        self.log_weights = np.asarray(log_weights, dtype=np.float64)
        # Each trace's log p(y | x) (None for files written before it was kept).
        self.log_likelihood = (None if log_likelihood is None
                               else np.asarray(log_likelihood, dtype=np.float64))
        self.chain = np.asarray(chain, dtype=np.int64)
        self.trace_type_id = np.asarray(trace_type_id, dtype=np.int64)
        self.trace_types = trace_types
        self.columns = columns
        self.named = named
        self.results = results
        self.metadata = dict(metadata or {})
        self._weights: np.ndarray | None = None

    # -- weights -----------------------------------------------------------------------------
    @property
    def num_traces(self) -> int:
        return len(self.log_weights)

    def __len__(self) -> int:
        return self.num_traces

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights (sum to one)."""
        if self._weights is None:
            self._weights = normalized_weights(self.log_weights)
        return self._weights

    @property
    def kish_ess(self) -> float:
        """Kish's effective sample size of the weights, (Σw)² / Σw² (0 if every weight is 0):
        honest for independent weighted draws, not for correlated ones (MCMC, SMC)."""
        if logsumexp(self.log_weights) == -math.inf:
            return 0.0
        return float(1.0 / np.sum(self.weights ** 2))

    @property
    def engine_summary(self) -> dict:
        """What the engine that drew this sample reported about it (see
        :meth:`etalumis_core.engines.Engine.summarize`); empty for a posterior no engine made."""
        return self.metadata.get("summary") or {}

    @property
    def ess(self) -> float:
        """The effective sample size the engine stands behind: Kish's for importance sampling,
        the autocorrelation-based one for MCMC, the genealogy-based one for SMC (the last two
        are the minimum over the scalar latents; ``engine_summary["ess_kind"]`` says which); NaN
        where the engine could estimate none. Kish's for a posterior no engine summarised (a
        subset, a combination of runs)."""
        summary = self.engine_summary
        if "ess" not in summary:
            return self.kish_ess
        return math.nan if summary["ess"] is None else float(summary["ess"])

    def ess_of(self, key: str) -> float:
        """The effective sample size of one variable's marginal, of the same kind as
        :attr:`ess`."""
        ess = self.engine_summary.get("ess_by_latent", {}).get(key)
        return self.marginal(key).ess if ess is None else float(ess)

    @property
    def log_evidence(self) -> float | None:
        """log of an estimate of the evidence p(y): the engine's own when it made one, None
        when its engine makes none (MCMC); for a posterior no engine summarised, the mean
        importance weight (meaningful for importance samples only)."""
        summary = self.engine_summary
        if "log_evidence" in summary:
            value = summary["log_evidence"]
            return None if value is None else float(value)
        return logsumexp(self.log_weights) - math.log(max(self.num_traces, 1))

    @property
    def num_chains(self) -> int:
        return int(self.chain.max()) + 1 if self.num_traces else 0

    # -- variables ---------------------------------------------------------------------------
    def _column(self, key: str) -> Column:
        column = self.named.get(key) or self.columns.get(key)
        if column is None:
            names = ", ".join(sorted(self.named)) or "none"
            raise KeyError(f"posterior has no variable named or addressed {key!r}; "
                           f"names: {names} (addresses: see .addresses())")
        return column

    def names(self) -> list[str]:
        return sorted(self.named)

    def scalar_names(self) -> list[str]:
        """Named variables with one number per trace, in order of first appearance: those an
        effective sample size, R-hat or a histogram is defined for."""
        return [name for name, column in self.named.items()
                if not column.ragged and column.values.ndim == 1 and len(column.values)]

    def addresses(self) -> list[str]:
        return list(self.columns)

    def marginal(self, key: str) -> Marginal:
        """The weighted sample of a variable, by name or by address."""
        column = self._column(key)
        if column.ragged:
            raise ValueError(f"variable {key!r} changes shape between traces; read its values "
                             f"with .values_of({key!r}) instead")
        w = self.weights[column.index]
        mass = float(w.sum())
        if mass <= 0.0:
            raise ValueError(f"variable {key!r} exists only in traces of zero weight")
        return Marginal(key, column.values, w / mass, column.discrete, mass)

    def values_of(self, key: str) -> tuple[np.ndarray, list | np.ndarray]:
        """``(trace indices, values)`` of a variable, also for ragged ones."""
        column = self._column(key)
        return column.index, column.values

    def mean(self, key: str) -> Any:
        return self.marginal(key).mean

    def stddev(self, key: str) -> Any:
        return self.marginal(key).stddev

    def trace_values(self, i: int) -> dict[str, Any]:
        """Every stored value of trace ``i`` by name (and by address for unnamed ones)."""
        out: dict[str, Any] = {}
        for table in (self.named, self.columns):
            for key, column in table.items():
                if key in out:
                    continue
                j = np.searchsorted(column.index, i)
                if j < len(column.index) and column.index[j] == i:
                    out[key] = column.values[j]
        return out

    # -- resampling and combining ------------------------------------------------------------
    def resample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.num_traces, size=n, replace=True, p=self.weights)

    def resample(self, n: int, rng: np.random.Generator) -> "Posterior":
        """An equally weighted posterior of ``n`` traces drawn by weight."""
        return self.subset(np.sort(self.resample_indices(n, rng)), keep_weights=False)

    def sample(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """``n`` traces drawn by weight, each as a dict of its values."""
        return [self.trace_values(int(i)) for i in self.resample_indices(n, rng)]

    def subset(self, indices: np.ndarray, keep_weights: bool = True) -> "Posterior":
        indices = np.asarray(indices, dtype=np.int64)

        def take(column: Column) -> Column:
            rows, new_index = [], []
            lookup = {int(t): r for r, t in enumerate(column.index)}
            for k, i in enumerate(indices.tolist()):
                r = lookup.get(i)
                if r is not None:
                    rows.append(r)
                    new_index.append(k)
            values = ([column.values[r] for r in rows] if column.ragged
                      else column.values[np.asarray(rows, dtype=np.int64)])
            return Column(column.key, column.name, column.kind, column.distribution,
                          column.discrete, np.asarray(new_index, dtype=np.int64), values)

        log_w = self.log_weights[indices] if keep_weights else np.zeros(len(indices))
        return Posterior(log_w, self.chain[indices], self.trace_type_id[indices],
                         self.trace_types, {k: take(c) for k, c in self.columns.items()},
                         {k: take(c) for k, c in self.named.items()},
                         take(self.results) if self.results is not None else None,
                         _without_sample_keys(self.metadata),
                         None if self.log_likelihood is None else self.log_likelihood[indices])

    @staticmethod
    def concat(posteriors: Sequence["Posterior"], separate_chains: bool = False) -> "Posterior":
        """Combine posteriors (parallel chunks of one run, or several runs). With
        ``separate_chains``, each input's chains get new ids (MCMC chains run apart)."""
        posteriors = [p for p in posteriors if p.num_traces]
        if not posteriors:
            raise ValueError("nothing to combine: every posterior is empty")
        type_ids: dict[tuple[str, ...], int] = {}
        log_w, chains, tt = [], [], []
        offset, chain_offset = 0, 0
        columns: dict[str, list] = {}
        named: dict[str, list] = {}
        results: list = []
        for p in posteriors:
            remap = np.array([type_ids.setdefault(t, len(type_ids)) for t in p.trace_types],
                             dtype=np.int64)
            log_w.append(p.log_weights)
            chains.append(p.chain + chain_offset if separate_chains else p.chain)
            tt.append(remap[p.trace_type_id] if len(remap) else p.trace_type_id)
            for table, src in ((columns, p.columns), (named, p.named)):
                for key, column in src.items():
                    table.setdefault(key, []).append((column, offset))
            if p.results is not None:
                results.append((p.results, offset))
            offset += p.num_traces
            if separate_chains:
                chain_offset += p.num_chains

        def merge(parts: list) -> Column:
            first = parts[0][0]
            index = np.concatenate([c.index + off for c, off in parts])
            vals = [c.values for c, _ in parts]
            if any(c.ragged for c, _ in parts) or len({np.shape(v)[1:] for v in vals}) > 1:
                values: Any = [row for v in vals for row in v]
            else:
                values = np.concatenate(vals)
            return Column(first.key, first.name, first.kind, first.distribution, first.discrete,
                          index, values)

        log_lik = (None if any(p.log_likelihood is None for p in posteriors)
                   else np.concatenate([p.log_likelihood for p in posteriors]))
        return Posterior(np.concatenate(log_w), np.concatenate(chains), np.concatenate(tt),
                         list(type_ids), {k: merge(v) for k, v in columns.items()},
                         {k: merge(v) for k, v in named.items()},
                         merge(results) if results else None,
                         _without_sample_keys(posteriors[0].metadata), log_lik)

    # -- diagnostics -------------------------------------------------------------------------
    def trace_type_table(self) -> list[dict]:
        """Trace types by posterior probability: hash, probability, count, length."""
        mass = np.bincount(self.trace_type_id, weights=self.weights,
                           minlength=len(self.trace_types))
        counts = np.bincount(self.trace_type_id, minlength=len(self.trace_types))
        order = np.argsort(-mass, kind="stable")
        return [{"trace_type": trace_type_hash(self.trace_types[i]),
                 "probability": float(mass[i]), "count": int(counts[i]),
                 "num_controlled": len(self.trace_types[i])} for i in order if counts[i]]

    def address_transitions(self) -> Counter:
        """Posterior-weighted counts of which controlled address follows which (with
        ``"START"``/``"END"``), the edges of the address-transition graph."""
        mass = np.bincount(self.trace_type_id, weights=self.weights,
                           minlength=len(self.trace_types))
        edges: Counter = Counter()
        for t, m in zip(self.trace_types, mass.tolist()):
            if m <= 0:
                continue
            path = ("START", *t, "END")
            for a, b in zip(path[:-1], path[1:]):
                edges[(a, b)] += m
        return edges

    def chains_of(self, key: str) -> list[np.ndarray]:
        column = self._column(key)
        chain = self.chain[column.index]
        return [np.asarray(column.values[chain == c], dtype=np.float64)
                for c in range(self.num_chains)]

    def r_hat(self, key: str) -> float:
        """Split-chain potential scale reduction (Gelman–Rubin) of a scalar variable."""
        halves = []
        for x in self.chains_of(key):
            h = len(x) // 2
            if h >= 2:
                halves += [x[:h], x[h:2 * h]]
        if len(halves) < 2:
            raise ValueError(f"R-hat of {key!r} needs at least one chain of 4 draws")
        n = min(len(h) for h in halves)
        chains = np.stack([h[:n] for h in halves])
        within = chains.var(axis=1, ddof=1).mean()
        between = n * chains.mean(axis=1).var(ddof=1)
        if within == 0:
            return 1.0 if between == 0 else math.inf
        var_plus = (n - 1) / n * within + between / n
        return float(math.sqrt(var_plus / within))

    def autocorrelation(self, key: str, max_lag: int = 50) -> np.ndarray:
        """Autocorrelation of a scalar variable, averaged over chains (lags 0..max_lag)."""
        out = [acf[: max_lag + 1] for acf in map(_autocorrelation, self.chains_of(key))
               if acf is not None]
        if not out:
            raise ValueError(f"autocorrelation of {key!r} needs a chain with varying values")
        lags = min(len(a) for a in out)
        return np.mean([a[:lags] for a in out], axis=0)

    def mcmc_ess(self, key: str) -> float:
        """Effective sample size of a scalar variable along MCMC chains: the sum over chains of
        n / τ, with the integrated autocorrelation time τ from Geyer's initial positive
        sequence."""
        total = 0.0
        for x in self.chains_of(key):
            acf = _autocorrelation(x)
            if acf is None:
                total += 1.0  # a chain stuck at one value carries one draw of information
                continue
            tau, k = -1.0, 0
            while 2 * k + 1 < len(acf):
                pair = acf[2 * k] + acf[2 * k + 1]
                if pair <= 0:
                    break
                tau += 2 * pair
                k += 1
            total += len(x) / max(tau, 1e-12)
        return float(total)

    def summary(self, max_variables: int = 50) -> dict:
        """Size, effective size (of the engine's kind, per latent too) and every named
        variable's statistics."""
        out: dict[str, Any] = {"num_traces": self.num_traces, "ess": self.ess,
                               "ess_kind": self.engine_summary.get("ess_kind", "kish"),
                               "num_chains": self.num_chains, "variables": {}}
        for key in self.names()[:max_variables]:
            try:
                out["variables"][key] = summary = self.marginal(key).summary()
                summary["ess"] = self.ess_of(key)
            except ValueError as error:
                out["variables"][key] = {"error": str(error)}
        return out

    # -- disk --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write to HDF5 atomically (no pickles, no variable-length HDF5 types)."""
        from .data.hdf5 import atomic_h5, write_json, write_strings

        with atomic_h5(path) as f:
            f.attrs["format"] = np.bytes_(b"etalumis-posterior")
            f.attrs["format_version"] = FORMAT_VERSION
            f.create_dataset("log_weights", data=self.log_weights)
            if self.log_likelihood is not None:
                f.create_dataset("log_likelihood", data=self.log_likelihood)
            f.create_dataset("chain", data=self.chain)
            f.create_dataset("trace_type_id", data=self.trace_type_id)
            write_strings(f, "trace_types/addresses", [a for t in self.trace_types for a in t])
            f.create_dataset("trace_types/lengths",
                             data=np.array([len(t) for t in self.trace_types], dtype=np.int64))
            tables = {"columns": self.columns, "named": self.named,
                      "results": {"result": self.results} if self.results is not None else {}}
            meta: dict[str, list] = {}
            for table, src in tables.items():
                meta[table] = []
                for i, column in enumerate(src.values()):
                    group = f.create_group(f"{table}/{i}")
                    group.create_dataset("index", data=column.index)
                    if column.ragged:
                        flat = [np.asarray(v, dtype=np.float64) for v in column.values]
                        group.create_dataset("flat", data=np.concatenate(
                            [v.ravel() for v in flat]) if flat else np.zeros(0),
                            compression="gzip")
                        write_json(group, "shapes", [list(v.shape) for v in flat])
                    else:
                        group.create_dataset("values", data=column.values,
                                             compression="gzip" if column.values.size > 4096
                                             else None)
                    meta[table].append(column.meta())
            write_json(f, "meta", {"tables": meta, "metadata": self.metadata})

    def to_arviz(self, path: str | os.PathLike | None = None, seed: int = 0,
                 observations: dict[str, Any] | None = None) -> Any:
        """This posterior as an ``arviz.InferenceData`` (groups ``posterior``, ``sample_stats``,
        ``observed_data`` and ``log_likelihood``), also written as netCDF to ``path`` when
        given; a weighted sample is resampled so that ArviZ's diagnostics claim no more than
        :attr:`ess` (see :mod:`.data.arviz`). ``observations`` adds to those the engine
        recorded (it keeps small ones only)."""
        from .data.arviz import to_inference_data

        return to_inference_data(self, path, seed, observations)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Posterior":
        from .data.hdf5 import open_h5, read_json, read_strings

        with open_h5(path, "etalumis-posterior") as f:
            meta = read_json(f, "meta")
            flat = read_strings(f, "trace_types/addresses")
            lengths = f["trace_types/lengths"][()]
            types, k = [], 0
            for n in lengths.tolist():
                types.append(tuple(flat[k:k + n]))
                k += n
            tables: dict[str, dict[str, Column]] = {}
            for table, metas in meta["tables"].items():
                tables[table] = {}
                for i, m in enumerate(metas):
                    group = f[f"{table}/{i}"]
                    if "values" in group:
                        values: Any = group["values"][()]
                    else:
                        shapes = read_json(group, "shapes")
                        data = group["flat"][()]
                        values, start = [], 0
                        for shape in shapes:
                            size = int(np.prod(shape))
                            values.append(data[start:start + size].reshape(shape))
                            start += size
                    tables[table][m["key"]] = Column(m["key"], m["name"], m["kind"],
                                                     m["distribution"], m["discrete"],
                                                     group["index"][()], values)
            return cls(f["log_weights"][()], f["chain"][()], f["trace_type_id"][()], types,
                       tables["columns"], tables["named"], tables["results"].get("result"),
                       meta["metadata"],
                       f["log_likelihood"][()] if "log_likelihood" in f else None)

    def __repr__(self) -> str:
        return (f"Posterior({self.num_traces} traces, ESS {self.ess:.1f}, "
                f"{len(self.named)} named variables)")


class PosteriorBuilder:
    """Collects traces into columns; :meth:`build` makes the :class:`Posterior`."""

    def __init__(self, max_value_size: int = 4096, chain: int = 0) -> None:
        self.max_value_size = max_value_size
        self.chain_id = chain
        self._log_w: list[float] = []
        self._log_lik: list[float] = []
        self._chain: list[int] = []
        self._type_ids: dict[tuple[str, ...], int] = {}
        self._tt: list[int] = []
        self._columns: dict[str, tuple[list, list, Any]] = {}
        self._named: dict[str, tuple[list, list, Any]] = {}
        self._results: tuple[list, list] = ([], [])

    def __len__(self) -> int:
        return len(self._log_w)

    def add(self, trace: Trace, log_weight: float | None = None, chain: int | None = None) -> None:
        i = len(self._log_w)
        self._log_w.append(trace.log_weight if log_weight is None else log_weight)
        self._log_lik.append(trace.log_likelihood)
        self._chain.append(self.chain_id if chain is None else chain)
        tt = trace.controlled_addresses
        type_ids = self._type_ids
        tid = type_ids.get(tt)
        if tid is None:
            tid = type_ids[tt] = len(type_ids)
        self._tt.append(tid)
        columns, named, limit = self._columns, self._named, self.max_value_size
        seen_names: set | None = None
        for v in trace.variables:
            kind = v.kind
            if kind is not SAMPLE and kind is not TAG:
                continue
            name = v.name
            if kind is SAMPLE and not v.control and name is None:
                continue
            value = v.value
            if type(value) is not float and type(value) is not int:
                if np.size(value) > limit or isinstance(value, (str, bytes, dict)):
                    continue
            entry = columns.get(v.address)
            if entry is None:
                entry = columns[v.address] = ([], [], v)
            entry[0].append(i)
            entry[1].append(value)
            if name is not None:
                if seen_names is None:
                    seen_names = set()
                if name in seen_names:
                    continue
                seen_names.add(name)
                entry = named.get(name)
                if entry is None:
                    entry = named[name] = ([], [], v)
                entry[0].append(i)
                entry[1].append(value)
        result = trace.result
        if type(result) is float or type(result) is int or (
                isinstance(result, np.ndarray) and result.size <= limit):
            self._results[0].append(i)
            self._results[1].append(result)

    @staticmethod
    def _column(key: str, index: list, values: list, example: Any) -> Column:
        distribution = example.distribution
        discrete = bool(getattr(distribution, "discrete", False))
        shapes = {np.shape(v) for v in values}
        if len(shapes) == 1:
            array: Any = np.asarray(values, dtype=np.int64 if discrete else np.float64)
        else:
            array = [np.asarray(v, dtype=np.float64) for v in values]
        return Column(key, example.name, example.kind,
                      getattr(distribution, "name", None), discrete,
                      np.asarray(index, dtype=np.int64), array)

    def build(self, metadata: dict | None = None) -> Posterior:
        results = None
        if self._results[0]:
            try:
                values = np.asarray(self._results[1], dtype=np.float64)
                results = Column("result", None, "result", None, False,
                                 np.asarray(self._results[0], dtype=np.int64), values)
            except ValueError:
                results = None
        return Posterior(np.asarray(self._log_w, dtype=np.float64),
                         np.asarray(self._chain, dtype=np.int64),
                         np.asarray(self._tt, dtype=np.int64), list(self._type_ids),
                         {k: self._column(k, *e) for k, e in self._columns.items()},
                         {k: self._column(k, *e) for k, e in self._named.items()},
                         results, metadata, np.asarray(self._log_lik, dtype=np.float64))


def _without_sample_keys(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k not in _SAMPLE_KEYS}


def from_traces(traces: Iterable[Trace], log_weights: Iterable[float] | None = None,
                **metadata: Any) -> Posterior:
    """A posterior from traces (their own log weights unless given)."""
    builder = PosteriorBuilder()
    weights = iter(log_weights) if log_weights is not None else None
    for t in traces:
        builder.add(t, next(weights) if weights is not None else None)
    return builder.build(metadata)
