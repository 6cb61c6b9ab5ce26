"""Trace datasets: traces drawn from the (optionally inflated) prior, stored in HDF5 shards.

Layout of a dataset directory::

    manifest.json        what the dataset is (N, seed, chunk size, simulator); written first
    shard-000000.h5      traces [0, chunk_size), one shard per work item, written atomically
    shard-000001.h5      ...
    index.h5             merged address dictionary and per-trace trace-type ids; written last

Shard ``k`` holds traces ``k*chunk_size ...`` drawn with ``chunk_rng(seed, k)``, so a shard's
content depends only on (simulator, seed, chunk size, k): generation can be spread over any
executor, killed, and resumed (complete shards are skipped; a half-written shard only ever
exists under a temporary name) without duplicating or losing a trace.

Inside a shard every trace is stored as ragged arrays (flat values plus offsets; no pickles,
no HDF5 variable-length types): per trace, a range of controlled samples; per sample, the
local address id, distribution id, shape, a range of elements (value and prior statistics),
log prior density and log proposal density (NaN when drawn from the prior). Observations,
the network's inputs, are fixed-shape float32 arrays ``obs/<i>`` of ``(n, *shape)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from ..controller import Controller
from ..distributions import Bernoulli, Categorical, LogNormal, Normal
from ..errors import ConfigError, EtalumisError
from ..executors import Executor, SerialExecutor
from ..progress import Progress
from ..seeding import chunk_rng, resolve_seed, split
from ..simulator import Simulator, SimulatorSpec, run_traces, simulator_name
from ..trace import trace_type_hash
from .hdf5 import (atomic_h5, atomic_write_text, open_h5, read_json, read_strings, write_json,
                   write_strings)
from .records import (DIST_IDS, DIST_NAMES, FAMILIES, FAMILY_IDS, NUM_STATS, Batch,
                      SampleRecord, TraceRecord, collate, record_from_trace)

log = logging.getLogger(__name__)

SHARD_FORMAT = "etalumis-traces"
INDEX_FORMAT = "etalumis-trace-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.h5"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.h5"


# ----------------------------------------------------------------------------------------------
# Prior inflation


def inflate(distribution: Any, factor: float) -> Any | None:
    """A wider version of ``distribution`` to draw training data from, or None to keep the prior.

    Normal and LogNormal widen their scale by ``factor``; Categorical, Bernoulli and Binomial
    are tempered (probabilities to the power ``1/factor``, renormalised: flat as ``factor``
    grows). Bounded and positive families keep their prior, whose support a wider
    distribution would leave.
    """
    name = distribution.name
    if name == "Normal":
        return Normal(distribution.mean, np.asarray(distribution.stddev) * factor)
    if name == "LogNormal":
        return LogNormal(distribution.loc, np.asarray(distribution.scale) * factor)
    if name == "Categorical":
        return Categorical(np.asarray(distribution.probs) ** (1.0 / factor))
    if name == "Bernoulli":
        p = np.asarray(distribution.probs, dtype=np.float64) ** (1.0 / factor)
        q = (1.0 - np.asarray(distribution.probs, dtype=np.float64)) ** (1.0 / factor)
        p = p / (p + q)
        return Bernoulli(float(p) if p.ndim == 0 else p)
    if name == "Binomial" and distribution.batch_shape == ():
        n = int(distribution.total_count)
        pmf = np.exp(distribution.log_prob(np.arange(n + 1, dtype=np.float64)))
        return Categorical(pmf ** (1.0 / factor))
    return None


class InflatedPriorController(Controller):
    """Draws controlled samples from an inflated prior and records the proposal's log density
    (the trace's weight then corrects for it, though training ignores it)."""

    def __init__(self, rng: np.random.Generator, factor: float,
                 observations: Mapping[str, Any] | None = None) -> None:
        super().__init__(rng, observations, sample_missing_observations=True)
        self.factor = float(factor)

    def propose(self, address: str, distribution: Any, name: str | None) -> tuple[Any, float | None, bool]:
        wide = inflate(distribution, self.factor)
        if wide is None:
            return distribution.sample(self.rng), None, False
        value = wide.sample(self.rng)
        log_q = wide.log_prob(value)
        return value, float(np.sum(log_q)), False


def make_generation_controller(rng: np.random.Generator, prior_inflation: float | None) -> Controller:
    """The controller of dataset generation and online training: missing observations are drawn
    from their distributions; controlled samples from the prior or an inflated prior."""
    if prior_inflation is not None and prior_inflation != 1.0:
        return InflatedPriorController(rng, prior_inflation)
    return Controller(rng, sample_missing_observations=True)


def check_inflation(prior_inflation: float | None) -> float | None:
    if prior_inflation in (None, False):
        return None
    if prior_inflation is True:
        return 3.0
    factor = float(prior_inflation)
    if not factor >= 1.0:
        raise ConfigError(f"prior_inflation must be a factor >= 1 (or None), got {prior_inflation!r}")
    return None if factor == 1.0 else factor


# ----------------------------------------------------------------------------------------------
# Writing


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def write_shard(path: str | os.PathLike, records: Sequence[TraceRecord], attrs: Mapping[str, Any]) -> dict:
    """Write records to one shard atomically; returns the shard's address table."""
    addresses: dict[str, int] = {}
    address_dist: list[int] = []
    address_family: list[int] = []
    address_size: list[int] = []
    address_support: list[int] = []
    types: dict[tuple[int, ...], int] = {}
    trace_type = np.zeros(len(records), dtype=np.int32)
    sample_offsets = np.zeros(len(records) + 1, dtype=np.int64)
    s_address, s_dist, s_ndim, shapes, s_log_prob, s_log_q, e_sizes = [], [], [], [], [], [], []
    values, stats = [], []
    obs_names: list[str] | None = None
    for i, r in enumerate(records):
        ids = []
        for s in r.samples:
            a = addresses.get(s.address)
            if a is None:
                a = addresses[s.address] = len(addresses)
                address_dist.append(DIST_IDS.get(s.dist_name, 255))
                address_family.append(FAMILY_IDS[s.family])
                address_size.append(s.value.size)
                address_support.append(s.support_size)
            else:
                address_size[a] = max(address_size[a], s.value.size)
                address_support[a] = max(address_support[a], s.support_size)
            ids.append(a)
            s_address.append(a)
            s_dist.append(DIST_IDS.get(s.dist_name, 255))
            s_ndim.append(len(s.shape))
            shapes.extend(s.shape)
            s_log_prob.append(s.log_prob)
            s_log_q.append(s.log_proposal)
            e_sizes.append(s.value.size)
            values.append(s.value)
            stats.append(s.stats)
        key = tuple(ids)
        t = types.get(key)
        if t is None:
            t = types[key] = len(types)
        trace_type[i] = t
        sample_offsets[i + 1] = sample_offsets[i] + len(r.samples)
        names = sorted(r.observations)
        if obs_names is None:
            obs_names = names
        elif names != obs_names:
            raise EtalumisError(f"trace {r.trace_id} observes {names} but earlier traces observe "
                                f"{obs_names}: a dataset needs the same named observations in "
                                f"every trace (the network's inputs)")
    obs_names = obs_names or []
    element_offsets = np.zeros(len(e_sizes) + 1, dtype=np.int64)
    np.cumsum(e_sizes, out=element_offsets[1:])
    big = {"compression": "gzip", "shuffle": True} if len(s_address) > 1024 else {}
    with atomic_h5(path) as f:
        f.attrs["format"] = np.bytes_(SHARD_FORMAT.encode())
        f.attrs["format_version"] = FORMAT_VERSION
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["num_traces"] = len(records)
        write_strings(f, "addresses", list(addresses))
        f.create_dataset("address_dist", data=np.array(address_dist, dtype=np.uint8))
        f.create_dataset("address_family", data=np.array(address_family, dtype=np.uint8))
        f.create_dataset("address_size", data=np.array(address_size, dtype=np.int64))
        f.create_dataset("address_support", data=np.array(address_support, dtype=np.int64))
        f.create_dataset("trace_id", data=np.array([r.trace_id for r in records], dtype=np.int64))
        f.create_dataset("trace_type", data=trace_type)
        f.create_dataset("log_prior", data=np.array([r.log_prior for r in records]))
        f.create_dataset("log_likelihood", data=np.array([r.log_likelihood for r in records]))
        f.create_dataset("log_proposal", data=np.array([r.log_proposal for r in records]))
        f.create_dataset("types/lengths", data=np.array([len(t) for t in types], dtype=np.int64))
        f.create_dataset("types/addresses",
                         data=np.array([a for t in types for a in t], dtype=np.int32))
        f.create_dataset("sample_offsets", data=sample_offsets)
        f.create_dataset("sample_address", data=np.array(s_address, dtype=np.int32), **big)
        f.create_dataset("sample_dist", data=np.array(s_dist, dtype=np.uint8), **big)
        f.create_dataset("sample_ndim", data=np.array(s_ndim, dtype=np.uint8), **big)
        f.create_dataset("sample_shapes", data=np.array(shapes, dtype=np.int64))
        f.create_dataset("sample_log_prob", data=np.array(s_log_prob), **big)
        f.create_dataset("sample_log_proposal", data=np.array(s_log_q), **big)
        f.create_dataset("element_offsets", data=element_offsets)
        f.create_dataset("values", data=np.concatenate(values) if values else np.zeros(0), **big)
        f.create_dataset("stats", data=np.concatenate(stats) if stats else np.zeros((0, NUM_STATS)),
                         **big)
        write_strings(f, "observation_names", obs_names)
        for j, name in enumerate(obs_names):
            data = np.stack([r.observations[name] for r in records]).astype(np.float32)
            per_row = max(int(np.prod(data.shape[1:])), 1)
            rows = max(1, min(len(records), 65536 // per_row))
            f.create_dataset(f"obs/{j}", data=data, chunks=(rows, *data.shape[1:]),
                             compression="gzip", shuffle=True)
    return {"addresses": list(addresses), "dist": address_dist, "family": address_family,
            "size": address_size, "support": address_support}


def _shard_complete(path: Path, count: int) -> bool:
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs.get("num_traces", -1)) == count
    except OSError:
        return False


def _generate_shard(simulator: Simulator, item: tuple, report: Callable[[int], None]) -> int:
    output_dir, seed, index, start, count, inflation, retries, sim_name = item

    controller = make_generation_controller(chunk_rng(seed, index), inflation)
    records = [record_from_trace(trace, start + j) for j, trace in
               enumerate(run_traces(simulator, controller, count, retries, report))]
    write_shard(Path(output_dir) / shard_name(index), records,
                {"chunk_index": index, "first_trace": start, "seed": seed,
                 "simulator": np.bytes_(sim_name.encode())})
    return count


def generate_dataset(simulator: Simulator | SimulatorSpec | Any, output_dir: str | os.PathLike,
                     num_traces: int, seed: int, executor: Executor | None = None,
                     chunk_size: int = 1000, prior_inflation: float | None = None,
                     retries: int = 3, progress: bool | None = None) -> "TraceDataset":
    """Draw ``num_traces`` traces from the prior (or an inflated prior) into HDF5 shards.

    Observations are drawn from their distributions and stored as the network's inputs. Runs one
    work item per shard on ``executor`` (serial by default); resumes a killed run in the same
    ``output_dir`` (same arguments required) by skipping complete shards.
    """
    from ..simulator import as_simulator

    if not isinstance(num_traces, (int, np.integer)) or num_traces < 1:
        raise ValueError(f"num_traces must be a positive integer, got {num_traces!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    seed = resolve_seed(seed)
    inflation = check_inflation(prior_inflation)
    if not isinstance(simulator, SimulatorSpec):
        simulator = as_simulator(simulator)
    name = simulator_name(simulator)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "etalumis-trace-dataset", "format_version": FORMAT_VERSION,
                "num_traces": int(num_traces), "seed": seed, "chunk_size": int(chunk_size),
                "simulator": name, "prior_inflation": inflation,
                "num_shards": math.ceil(num_traces / chunk_size)}
    path = out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old != manifest:
            diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
            raise ConfigError(f"{out} already holds a different dataset (differences, existing "
                              f"vs requested: {diff}); use another output directory")
    else:
        _write_json_atomic(path, manifest)
    chunks = split(int(num_traces), int(chunk_size))
    items, weights, done = [], [], 0
    for index, (start, count) in enumerate(chunks):
        if _shard_complete(out / shard_name(index), count):
            done += count
            continue
        items.append((str(out), seed, index, start, count, inflation, retries, name))
        weights.append(count)
    if done:
        log.info("resuming dataset %s: %d of %d traces already written", out, done, num_traces)
    owned = executor is None
    executor = executor or SerialExecutor()
    with Progress(int(num_traces), "generating traces", progress) as bar:
        bar.update(done)
        try:
            if items:
                executor.map(_generate_shard, items, simulator, bar, weights=weights)
        finally:
            if owned:
                executor.close()
    build_index(out)
    return TraceDataset(out)


# ----------------------------------------------------------------------------------------------
# Index


def build_index(path: str | os.PathLike) -> None:
    """Merge every shard's address dictionary and trace types into ``index.h5`` (atomically).

    Global address ids follow the sorted address strings, so they do not depend on which
    worker finished first.
    """
    out = Path(path)
    manifest = json.loads((out / MANIFEST).read_text())
    shards = [out / shard_name(k) for k in range(manifest["num_shards"])]
    table: dict[str, list[int]] = {}
    shard_types: list[list[tuple[str, ...]]] = []
    shard_trace_types: list[np.ndarray] = []
    counts = []
    obs: dict[str, tuple] | None = None
    for p in shards:
        if not p.exists():
            raise EtalumisError(f"{p} is missing: dataset {out} is incomplete; run "
                                f"generate_dataset again with the same arguments to finish it")
        with open_h5(p, SHARD_FORMAT) as f:
            names = read_strings(f, "addresses")
            dist, fam = f["address_dist"][()], f["address_family"][()]
            size, support = f["address_size"][()], f["address_support"][()]
            for j, a in enumerate(names):
                entry = table.get(a)
                if entry is None:
                    table[a] = [int(dist[j]), int(fam[j]), int(size[j]), int(support[j])]
                else:
                    entry[2] = max(entry[2], int(size[j]))
                    entry[3] = max(entry[3], int(support[j]))
            lengths = f["types/lengths"][()]
            flat = f["types/addresses"][()]
            types, k = [], 0
            for n in lengths.tolist():
                types.append(tuple(names[i] for i in flat[k:k + n].tolist()))
                k += n
            shard_types.append(types)
            shard_trace_types.append(f["trace_type"][()])
            counts.append(int(f.attrs["num_traces"]))
            shard_obs = {n: tuple(f[f"obs/{j}"].shape[1:])
                         for j, n in enumerate(read_strings(f, "observation_names"))}
            if obs is None:
                obs = shard_obs
            elif obs != shard_obs:
                raise EtalumisError(f"{p} observes {shard_obs}, other shards {obs}")
    addresses = sorted(table)
    global_types: dict[tuple[str, ...], int] = {}
    per_trace = []
    for types, tt in zip(shard_types, shard_trace_types):
        remap = np.array([global_types.setdefault(t, len(global_types)) for t in types],
                         dtype=np.int32)
        per_trace.append(remap[tt] if len(remap) else tt)
    ids = {a: i for i, a in enumerate(addresses)}
    with atomic_h5(out / INDEX) as f:
        f.attrs["format"] = np.bytes_(INDEX_FORMAT.encode())
        f.attrs["format_version"] = FORMAT_VERSION
        write_strings(f, "addresses", addresses)
        f.create_dataset("address_table", data=np.array([table[a] for a in addresses],
                                                        dtype=np.int64).reshape(-1, 4))
        f.create_dataset("shard_counts", data=np.array(counts, dtype=np.int64))
        f.create_dataset("trace_type", data=np.concatenate(per_trace) if per_trace
                         else np.zeros(0, dtype=np.int32))
        f.create_dataset("types/lengths", data=np.array([len(t) for t in global_types],
                                                        dtype=np.int64))
        f.create_dataset("types/addresses", data=np.array(
            [ids[a] for t in global_types for a in t], dtype=np.int64))
        write_json(f, "observations", {k: list(v) for k, v in (obs or {}).items()})


# ----------------------------------------------------------------------------------------------
# Reading


class _Shard:
    """The small per-trace arrays of one shard, read once; the bulk is read per request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open_h5(path, SHARD_FORMAT) as f:
            self.addresses = read_strings(f, "addresses")
            self.sample_offsets = f["sample_offsets"][()]
            self.element_offsets = f["element_offsets"][()]
            self.sample_ndim = f["sample_ndim"][()]
            self.shape_offsets = np.concatenate([[0], np.cumsum(self.sample_ndim, dtype=np.int64)])
            self.trace_id = f["trace_id"][()]
            self.log_prior = f["log_prior"][()]
            self.log_likelihood = f["log_likelihood"][()]
            self.log_proposal = f["log_proposal"][()]
            self.observation_names = read_strings(f, "observation_names")

    def read(self, rows: np.ndarray) -> list[TraceRecord]:
        """Records of the given rows (sorted, unique). Bulk arrays are read over the span of
        the requested rows only."""
        so, eo = self.sample_offsets, self.element_offsets
        s0, s1 = int(so[rows[0]]), int(so[rows[-1] + 1])
        e0, e1 = int(eo[s0]), int(eo[s1])
        h0, h1 = int(self.shape_offsets[s0]), int(self.shape_offsets[s1])
        with h5py.File(self.path, "r") as f:
            address = f["sample_address"][s0:s1]
            dist = f["sample_dist"][s0:s1]
            log_prob = f["sample_log_prob"][s0:s1]
            log_q = f["sample_log_proposal"][s0:s1]
            shapes = f["sample_shapes"][h0:h1]
            values = f["values"][e0:e1]
            stats = f["stats"][e0:e1]
            obs = {n: f[f"obs/{j}"][rows] for j, n in enumerate(self.observation_names)}
        families = [None] * len(self.addresses)
        out = []
        for k, r in enumerate(rows.tolist()):
            samples = []
            for s in range(int(so[r]), int(so[r + 1])):
                i = s - s0
                a = int(address[i])
                ea, eb = int(eo[s]) - e0, int(eo[s + 1]) - e0
                ha, hb = int(self.shape_offsets[s]) - h0, int(self.shape_offsets[s + 1]) - h0
                name = DIST_NAMES[dist[i]] if dist[i] < len(DIST_NAMES) else "Distribution"
                family = families[a]
                if family is None:
                    family = families[a] = self._family(a)
                value = values[ea:eb]
                st = stats[ea:eb]
                support = (int(st[:, 3].max() - st[:, 2].min()) + 1
                           if family == "finite" and len(st) else 0)
                samples.append(SampleRecord(self.addresses[a], name, family,
                                            tuple(shapes[ha:hb].tolist()), value, st,
                                            float(log_prob[i]), float(log_q[i]), support))
            out.append(TraceRecord(int(self.trace_id[r]), {n: obs[n][k] for n in obs}, samples,
                                   float(self.log_prior[r]), float(self.log_likelihood[r]),
                                   float(self.log_proposal[r])))
        return out

    _family_cache: dict | None = None

    def _family(self, a: int) -> str:
        if self._family_cache is None:
            with h5py.File(self.path, "r") as f:
                self._family_cache = {i: FAMILIES[v] for i, v in
                                      enumerate(f["address_family"][()].tolist())}
        return self._family_cache[a]


class TraceDataset:
    """A trace dataset on disk, read lazily: only the shards and rows a batch needs.

    ``len(dataset)`` traces with global ids ``0..N-1`` in shard order. ``addresses`` is the
    merged address dictionary (``address -> (dist name, family, element count, support
    size)``), ``trace_types`` the distinct controlled-address sequences, ``trace_type`` the
    type id of every trace (the index by trace type).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise FileNotFoundError(f"{self.path} is not a trace dataset (no {MANIFEST})")
        self.manifest = json.loads(manifest_path.read_text())
        if not (self.path / INDEX).exists():
            raise EtalumisError(f"dataset {self.path} is incomplete (no {INDEX}); run "
                                f"generate_dataset again with the same arguments to finish it")
        with open_h5(self.path / INDEX, INDEX_FORMAT) as f:
            names = read_strings(f, "addresses")
            table = f["address_table"][()]
            self.shard_counts = f["shard_counts"][()]
            self.trace_type = f["trace_type"][()]
            lengths = f["types/lengths"][()]
            flat = f["types/addresses"][()]
            self.observation_shapes = {k: tuple(v) for k, v in read_json(f, "observations").items()}
        self.addresses = {a: (DIST_NAMES[t[0]] if t[0] < len(DIST_NAMES) else "Distribution",
                              FAMILIES[t[1]], int(t[2]), int(t[3]))
                          for a, t in zip(names, table.tolist())}
        self.trace_types: list[tuple[str, ...]] = []
        k = 0
        for n in lengths.tolist():
            self.trace_types.append(tuple(names[i] for i in flat[k:k + n].tolist()))
            k += n
        self.shard_starts = np.concatenate([[0], np.cumsum(self.shard_counts)])
        self._shards: dict[int, _Shard] = {}

    @property
    def simulator(self) -> str:
        return self.manifest["simulator"]

    def __len__(self) -> int:
        return int(self.shard_starts[-1])

    def __repr__(self) -> str:
        return (f"TraceDataset({str(self.path)!r}, {len(self)} traces, "
                f"{len(self.trace_types)} trace types, {len(self.addresses)} addresses)")

    def _shard(self, k: int) -> _Shard:
        shard = self._shards.get(k)
        if shard is None:
            shard = self._shards[k] = _Shard(self.path / shard_name(k))
        return shard

    def records(self, indices: Sequence[int] | np.ndarray) -> list[TraceRecord]:
        """Records of the given global trace ids, in the given order."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"trace ids must lie in [0, {len(self)})")
        shard_of = np.searchsorted(self.shard_starts, indices, side="right") - 1
        found: dict[int, TraceRecord] = {}
        for k in np.unique(shard_of).tolist():
            rows = np.unique(indices[shard_of == k] - self.shard_starts[k])
            for r, rec in zip(rows.tolist(), self._shard(k).read(rows)):
                found[int(self.shard_starts[k]) + r] = rec
        return [found[i] for i in indices.tolist()]

    def batch(self, indices: Sequence[int] | np.ndarray) -> Batch:
        """A minibatch of the given traces, split into sub-batches by trace type."""
        return collate(self.records(indices), list(self.observation_shapes))

    def type_buckets(self) -> dict[int, np.ndarray]:
        """Global trace ids by trace-type id."""
        order = np.argsort(self.trace_type, kind="stable")
        types, starts = np.unique(self.trace_type[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        return {int(t): order[a:b] for t, a, b in zip(types, starts, ends)}

    def batches(self, batch_size: int, rng: np.random.Generator, group_by_type: bool = False,
                drop_last: bool = False) -> Iterator[Batch]:
        """One epoch of minibatches in random order.

        Each minibatch is split into sub-batches by trace type. With ``group_by_type`` every
        minibatch is drawn from a single trace type (one LSTM pass per minibatch; the index by
        trace type makes that cheap).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if group_by_type:
            chunks = []
            for ids in self.type_buckets().values():
                ids = rng.permutation(ids)
                chunks += [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
            order = rng.permutation(len(chunks))
            for j in order.tolist():
                if drop_last and len(chunks[j]) < batch_size:
                    continue
                yield self.batch(chunks[j])
            return
        perm = rng.permutation(len(self))
        stop = len(perm) - (len(perm) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.batch(perm[i:i + batch_size])

    def trace_type_counts(self) -> dict[str, int]:
        """Number of traces of each trace type, by the type's hash."""
        counts = np.bincount(self.trace_type, minlength=len(self.trace_types))
        return {trace_type_hash(t): int(c) for t, c in zip(self.trace_types, counts.tolist())}
