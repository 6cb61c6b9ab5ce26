"""The proposal network of inference compilation (an LSTM over the controlled addresses).

At step ``t`` of a trace the LSTM reads the observation embedding, an embedding of the value
sampled at step ``t-1`` (one small layer per address, since values differ in type and scale), a
learned embedding of the address about to be sampled and of its distribution type; a head of
that address turns the LSTM output into a proposal (see :mod:`etalumis_core.nn.heads`).

Per-address layers are created when an address is first met (or all at once from a pre-scan of a
dataset, which every rank of a distributed run must do so that all ranks hold the same layers).
They are keyed by the address's integer id in the network's address dictionary: addresses are
long strings with dots, which ``ModuleDict`` keys cannot hold.

Long loops. An address ends in its instance (``{base}__{distribution}__{instance}``, see
:mod:`etalumis_core.runtime`); instances up to ``max_instances`` have layers of their own, and
every later instance of the same base and distribution uses the layers of instance
``max_instances`` (:meth:`ProposalNetwork.layer_address`, the same in training and inference,
and recorded in the network file), so a rejection loop of 10^5 draws adds at most
``max_instances`` sets of layers. A trace type longer than ``checkpoint_steps`` steps is run in
segments of that many steps whose activations are recomputed during the backward pass (gradient
checkpointing): the gradient is exact and the memory kept for it is that of one segment.

Files: :meth:`ProposalNetwork.save` writes ``torch.save({"header": <JSON text>, "state_dict":
...})``; :meth:`ProposalNetwork.load` reads it with ``weights_only=True`` and rebuilds the layers
from the header before loading the weights.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..data.records import DIST_IDS, DIST_NAMES, Batch, SubBatch, family_of, prior_stats, support_size
from ..controller import Controller
from ..errors import EtalumisError
from ..simulator import SimulatorSpec, as_simulator, run_trace
from .embeddings import feedforward
from .heads import ProposalHead, make_head

log = logging.getLogger(__name__)

FORMAT = "etalumis-proposal-network"
FORMAT_VERSION = 1

# A site: (address, distribution name, family, element count, support size).
Site = tuple[str, str, str, int, int]

# Networks written before ``max_instances`` existed gave every instance its own layers.
_CONFIG_OF_OLDER_FILES = {"max_instances": None}


EmbeddingFactory = Callable[..., nn.Module]
# Where a network finds the factory of an embedding it names: name -> factory, as a mapping or
# a function (``etalumis_core.plugins.embedding_factory`` looks names up in the registry).
Embeddings = Union[Mapping[str, EmbeddingFactory], Callable[[str], EmbeddingFactory]]


def resolve_embedding(embedding: str | EmbeddingFactory,
                      embeddings: Embeddings | None = None) -> tuple[str, EmbeddingFactory]:
    """``(name, factory)`` of an observation embedding given by name or as a factory (whose
    name is then its ``__name__``). Names are looked up in ``embeddings``; without it only the
    built-in ``feedforward`` is known."""
    if callable(embedding):
        return getattr(embedding, "__name__", type(embedding).__name__), embedding
    factory = None
    if isinstance(embeddings, Mapping):
        factory = embeddings.get(embedding)
    elif embeddings is not None:
        factory = embeddings(embedding)
    if factory is None and embedding == "feedforward":
        factory = feedforward
    if factory is None:
        raise EtalumisError(
            f"the observation embedding {embedding!r} is not built in: give the network its "
            f"factory (embedding=FACTORY), or embeddings= a mapping of names to factories or "
            f"etalumis_core.plugins.embedding_factory (the installed proposal architectures)")
    return embedding, factory


class Scoring:
    """What scoring one trace adds to the training loss's pass (:meth:`ProposalNetwork.
    log_prob_of`): the steps whose previous value is not read (they follow an address the
    network skipped) and, by step, the categories a finite proposal may take (those the
    prior allows, see :meth:`CategoricalHead.prior_mask`)."""

    def __init__(self, cut: list[int], masks: dict[int, np.ndarray]) -> None:
        self.cut = cut
        self.masks = masks

    def masked(self, raw: torch.Tensor, steps: list[int]) -> torch.Tensor:
        """``raw`` (one row per step of ``steps``, 1, K) with the ruled-out categories at -inf."""
        allowed = torch.ones(raw.shape[0], raw.shape[-1], dtype=torch.bool, device=raw.device)
        for row, t in enumerate(steps):
            mask = self.masks.get(t)
            if mask is not None:
                allowed[row, :len(mask)] = torch.from_numpy(mask)
        return raw.masked_fill(~allowed[:, None, :], -math.inf)


class ProposalNetwork(nn.Module):
    """Observation embedding + address/distribution/previous-sample embeddings + LSTM + heads.

    Parameters
    ----------
    observation_shapes:
        Observation name -> shape: the network's inputs.
    simulator:
        Name of the simulator the network is for (checked when inference loads it).
    embedding:
        The observation-embedding architecture: its registry name (recorded in the network
        file), or its factory ``factory(observation_shapes, embedding_dim, **options)``.
    embedding_options:
        Keyword options of that architecture's factory.
    embeddings:
        Where names are looked up: a mapping ``name -> factory`` or a function of the name
        (``etalumis_core.plugins.embedding_factory``: every installed architecture). None
        knows the built-in ``feedforward`` only.
    normalize_observations:
        Standardise each observation by a mean and stddev fitted on the first training batch.
    max_instances:
        Instances of one base address (and distribution) that get layers of their own; later
        instances share the layers of this one. None: every instance has its own (as pyprob).
    checkpoint_steps:
        Trace types longer than this are trained in segments of this many steps with gradient
        checkpointing (exact gradient, activation memory of one segment).
    """

    def __init__(self, observation_shapes: Mapping[str, Sequence[int]], simulator: str | None = None,
                 embedding: str | EmbeddingFactory = "feedforward",
                 embedding_options: Mapping[str, Any] | None = None,
                 embedding_dim: int = 64, lstm_dim: int = 128, lstm_depth: int = 1,
                 address_embedding_dim: int = 16, sample_embedding_dim: int = 8,
                 distribution_embedding_dim: int = 4, head_hidden_dim: int = 64,
                 mixture_components: int = 5, normalize_observations: bool = True,
                 max_instances: int | None = 16, checkpoint_steps: int = 1024,
                 embeddings: Embeddings | None = None) -> None:
        super().__init__()
        self.observation_shapes = {k: tuple(int(d) for d in v)
                                   for k, v in sorted(observation_shapes.items())}
        self.simulator = simulator
        embedding, factory = resolve_embedding(embedding, embeddings)
        self.config = dict(embedding=embedding, embedding_options=dict(embedding_options or {}),
                           embedding_dim=int(embedding_dim), lstm_dim=int(lstm_dim),
                           lstm_depth=int(lstm_depth),
                           address_embedding_dim=int(address_embedding_dim),
                           sample_embedding_dim=int(sample_embedding_dim),
                           distribution_embedding_dim=int(distribution_embedding_dim),
                           head_hidden_dim=int(head_hidden_dim),
                           mixture_components=int(mixture_components),
                           normalize_observations=bool(normalize_observations),
                           max_instances=None if max_instances is None else int(max_instances),
                           checkpoint_steps=int(checkpoint_steps))
        if max_instances is not None and self.config["max_instances"] < 1:
            raise EtalumisError(f"max_instances must be at least 1 (or None: no bound), got "
                                f"{max_instances}")
        if self.config["checkpoint_steps"] < 1:
            raise EtalumisError(f"checkpoint_steps must be at least 1, got {checkpoint_steps}")
        self.observation_embedding = factory(observation_shapes=self.observation_shapes,
                                             embedding_dim=int(embedding_dim),
                                             **self.config["embedding_options"])
        self.distribution_embedding = nn.Embedding(len(DIST_NAMES) + 1, distribution_embedding_dim)
        self.lstm_input_dim = (embedding_dim + sample_embedding_dim + address_embedding_dim
                               + distribution_embedding_dim)
        self.lstm = nn.LSTM(self.lstm_input_dim, lstm_dim, lstm_depth)
        self.address_embeddings = nn.ParameterDict()
        self.sample_embeddings = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.sites: list[Site] = []
        self.address_ids: dict[str, int] = {}
        n = len(self.observation_shapes)
        self.register_buffer("observation_mean", torch.zeros(n))
        self.register_buffer("observation_std", torch.ones(n))
        self.register_buffer("normalizer_ready", torch.zeros((), dtype=torch.bool))
        self.traces_trained = 0
        self._shared_instances_reported = False

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def for_simulator(cls, simulator: Any, seed: int = 0, **options: Any) -> "ProposalNetwork":
        """A network whose inputs are the simulator's observations (its declared shapes, or
        those of one forward run when it declares none)."""
        from ..data.records import record_from_trace

        sim = simulator.build() if isinstance(simulator, SimulatorSpec) else as_simulator(simulator)
        shapes = dict(getattr(sim, "observations", {}) or {})
        if not shapes:
            controller = Controller(np.random.default_rng(seed), sample_missing_observations=True)
            shapes = {k: np.shape(v) for k, v in
                      record_from_trace(run_trace(sim, controller)).observations.items()}
        return cls(shapes, simulator=getattr(simulator, "name", sim.name), **options)

    @classmethod
    def for_dataset(cls, dataset: Any, **options: Any) -> "ProposalNetwork":
        """A network for a :class:`~etalumis_core.data.TraceDataset`, pre-scanned: every
        address of the dataset has its layers before training starts."""
        network = cls(dataset.observation_shapes, simulator=dataset.simulator, **options)
        network.prescan(dataset)
        return network

    def prescan(self, source: Any) -> list[nn.Parameter]:
        """Create the layers of every address of a dataset (its merged address dictionary, in
        sorted order), a :class:`Batch`, or an iterable of traces."""
        if hasattr(source, "addresses") and isinstance(source.addresses, dict):
            sites = [(a, *info) for a, info in sorted(source.addresses.items())]
        elif isinstance(source, Batch):
            sites = [(a, *info) for a, info in source.sites().items()]
        else:
            seen: dict[str, Site] = {}
            for trace in source:
                for v in trace.samples(controlled_only=True):
                    size = max(int(np.size(v.value)), 1)
                    k = support_size(v.distribution)
                    old = seen.get(v.address)
                    if old is None or k > old[4]:
                        seen[v.address] = (v.address, v.distribution.name,
                                           family_of(v.distribution), size, k)
            sites = list(seen.values())
        return self.ensure_sites(sites)

    def layer_address(self, address: str) -> str:
        """The address whose layers ``address`` uses: itself, or for an instance beyond
        ``max_instances``, instance ``max_instances`` of the same base and distribution."""
        limit = self.config["max_instances"]
        if limit is None:
            return address
        stem, sep, instance = address.rpartition("__")
        if sep and instance.isdigit() and int(instance) > limit:
            return f"{stem}__{limit}"
        return address

    def layer_id(self, address: str) -> int | None:
        """Index in :attr:`sites` of the layers ``address`` uses; None when it has none."""
        return self.address_ids.get(self.layer_address(address))

    def layer_sites(self, sites: Iterable[Sequence[Any]]) -> dict[str, tuple]:
        """Sites ``(address, dist name, family, element count, support size)`` keyed by the
        address whose layers they use (:meth:`layer_address`), each with the largest support
        of the addresses sharing those layers. Warns once when instances start sharing."""
        merged: dict[str, tuple] = {}
        for address, *info in sites:
            key = self.layer_address(address)
            if key != address and not self._shared_instances_reported:
                self._shared_instances_reported = True
                limit = self.config["max_instances"]
                log.warning("address %s: instances beyond %d of an address share the layers "
                            "of instance %d (ProposalNetwork(max_instances=N) sets the bound, "
                            "None removes it)", address, limit, limit)
            known = merged.get(key)
            if known is None or info[3] > known[3]:
                merged[key] = tuple(info)
        return merged

    def ensure_sites(self, sites: Iterable[Sequence[Any]]) -> list[nn.Parameter]:
        """Create layers for addresses not seen before (instances beyond ``max_instances``
        use those of an earlier instance); return the new parameters (for the optimizer's new
        parameter group). An address keeps its layers for good."""
        new: list[nn.Parameter] = []
        cfg = self.config
        for address, (dist_name, family, size, k) in self.layer_sites(sites).items():
            known = self.address_ids.get(address)
            if known is not None:
                old = self.sites[known]
                if family == "finite" and k > old[4]:
                    raise EtalumisError(
                        f"address {address!r} now has {k} possible values but its proposal "
                        f"layer was built for {old[4]}: pre-scan the training data (a dataset, "
                        f"or Trainer(prescan_traces=...)) so that layers are built for the "
                        f"largest support")
                continue
            i = len(self.sites)
            key = f"a{i}"
            self.address_ids[address] = i
            self.sites.append((address, dist_name, family, int(size), int(k)))
            emb = nn.Parameter(torch.randn(cfg["address_embedding_dim"]) * 0.1)
            head = make_head(family, cfg["lstm_dim"], int(size), cfg["head_hidden_dim"],
                             cfg["mixture_components"], int(k))
            sample = nn.Linear(head.feature_dim, cfg["sample_embedding_dim"])
            device = self.device
            if device.type != "cpu":
                emb = nn.Parameter(emb.detach().to(device))
                head.to(device)
                sample.to(device)
            self.address_embeddings[key] = emb
            self.heads[key] = head
            self.sample_embeddings[key] = sample
            new += [emb, *head.parameters(), *sample.parameters()]
        return new

    def site_parameter_names(self, address: str) -> list[str]:
        key = f"a{self.layer_id(address)}"
        return ([f"address_embeddings.{key}"]
                + [f"heads.{key}.{n}" for n, _ in self.heads[key].named_parameters()]
                + [f"sample_embeddings.{key}.{n}" for n, _ in
                   self.sample_embeddings[key].named_parameters()])

    @property
    def device(self) -> torch.device:
        """Where the network's tensors live (``network.to(device)`` moves it)."""
        return self.observation_mean.device

    # -- observations --------------------------------------------------------------------------
    def observation_moments(self, batch: Batch) -> torch.Tensor:
        """``(n, 3)`` float64: each observation's element count, sum and sum of squares over a
        batch (sums over several batches, e.g. the slices of a global batch, add up)."""
        rows = []
        for n in self.observation_shapes:
            x = [sb.observations[n].reshape(-1).astype(np.float64) for sb in batch.sub_batches]
            x = np.concatenate(x) if x else np.zeros(0)
            rows.append([x.size, x.sum(), np.square(x).sum()])
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)

    def set_normalizer(self, moments: torch.Tensor) -> None:
        """Fix each observation's mean and stddev (scalars, over every element) from
        :meth:`observation_moments`."""
        means, stds = [], []
        for count, total, squares in moments.tolist():
            mean = total / count if count else 0.0
            std = math.sqrt(max(squares / count - mean * mean, 0.0)) if count else 1.0
            means.append(mean)
            stds.append(std if std > 1e-8 else 1.0)
        self.observation_mean.copy_(torch.tensor(means))
        self.observation_std.copy_(torch.tensor(stds))
        self.normalizer_ready.fill_(True)

    def fit_normalizer(self, batch: Batch) -> None:
        """Fix each observation's mean and stddev from a batch."""
        self.set_normalizer(self.observation_moments(batch))

    def embed_observations(self, observations: Mapping[str, Any]) -> torch.Tensor:
        """``(b, embedding_dim)`` from ``name -> array (b, *shape)``."""
        tensors = {}
        normalize = self.config["normalize_observations"]
        for j, (n, shape) in enumerate(self.observation_shapes.items()):
            x = torch.as_tensor(np.asarray(observations[n], dtype=np.float32), device=self.device)
            x = x.reshape(-1, *shape)
            if normalize:
                x = (x - self.observation_mean[j]) / self.observation_std[j]
            tensors[n] = x
        return self.observation_embedding(tensors)

    # -- training ------------------------------------------------------------------------------
    def sub_batch_log_prob(self, sb: SubBatch, embedding: torch.Tensor,
                           scoring: Scoring | None = None) -> torch.Tensor:
        """Log proposal density of each trace of a sub-batch, summed over its steps: (b,).
        One LSTM pass over the sub-batch's control-flow path; each address's layers run once
        over all of its steps. Paths longer than ``checkpoint_steps`` run in checkpointed
        segments (see the module docstring). ``scoring`` (from :meth:`log_prob_of`) makes
        the densities those :meth:`propose` gives: float64, with its cut inputs and masks."""
        b, steps = sb.size, len(sb.trace_type)
        if steps == 0:
            return torch.zeros(b, device=self.device)
        keys = [f"a{self.layer_id(a)}" for a in sb.trace_type]
        segment = self.config["checkpoint_steps"]
        if steps <= segment or not torch.is_grad_enabled():
            return self._segment_log_prob(sb, keys, 0, steps, embedding, scoring=scoring)[0]
        if not embedding.requires_grad:
            # Reentrant checkpointing passes gradients on only when an input requires them.
            embedding = embedding.detach().requires_grad_()
        zeros = torch.zeros(self.config["lstm_depth"], b, self.config["lstm_dim"],
                            device=self.device)
        h = c = zeros
        total = torch.zeros(b, device=self.device)
        for start in range(0, steps, segment):
            # Tensors enter as arguments (what the checkpoint detaches and passes gradients
            # back through), the rest bound to the function (not walked by the checkpoint).
            run = functools.partial(self._segment_log_prob, sb, keys, start,
                                    min(start + segment, steps))
            lp, h, c = checkpoint(run, embedding, h, c, use_reentrant=True)
            total = total + lp
        return total

    def _segment_log_prob(self, sb: SubBatch, keys: list[str], start: int, stop: int,
                          embedding: torch.Tensor, h: torch.Tensor | None = None,
                          c: torch.Tensor | None = None,
                          scoring: Scoring | None = None) -> tuple[torch.Tensor, ...]:
        """Steps ``start..stop-1`` of a sub-batch from LSTM state ``h, c`` (None: the start):
        ``(log density summed over those steps (b,), h, c)``."""
        b, n = sb.size, stop - start
        device = self.device
        cfg = self.config
        dtype = torch.float32 if scoring is None else torch.float64

        def by_kind(first: int, last: int) -> list[tuple[list[int], dict[str, int]]]:
            """Steps ``first..last-1`` grouped by the kind of their head (heads of one kind
            share ``log_prob`` and ``features``, so each kind is scored in one call) and
            within a kind by address: ``(steps, address -> its number of steps)`` per kind."""
            of_kind: dict[tuple, dict[str, list[int]]] = {}
            for t in range(first, last):
                of_kind.setdefault(kind_of[keys[t]], {}).setdefault(keys[t], []).append(t)
            return [([t for ts in of_key.values() for t in ts],
                     {k: len(ts) * b for k, ts in of_key.items()}) for of_key in of_kind.values()]

        kind_of = {k: self.heads[k].kind for k in set(keys[max(start - 1, 0):stop])}

        def stacked(arrays: list[np.ndarray], ts: list[int],
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
            x = np.stack([arrays[t] for t in ts])   # (m, b, size[, 4]) -> (m b, size[, 4])
            return torch.from_numpy(x.reshape(len(ts) * b, *x.shape[2:])).to(device, dtype)

        def per_address(layers: nn.ModuleDict, rows_of: dict[str, int],
                        x: torch.Tensor) -> torch.Tensor:
            """Each address's layer over its consecutive rows of ``x`` (``forward``: no module
            hooks, whose call costs more than a small layer at one trace)."""
            return torch.cat([layers[k].forward(part) for k, part in
                              zip(rows_of, x.split(list(rows_of.values())))])

        # Step t reads the embedding of the value sampled at step t-1 (zeros at step 0).
        prev = torch.zeros(n, b, cfg["sample_embedding_dim"], device=device)
        for ts, rows_of in by_kind(max(start - 1, 0), stop - 1):
            head = self.heads[next(iter(rows_of))]
            e = per_address(self.sample_embeddings, rows_of,
                            head.features(stacked(sb.values, ts), stacked(sb.stats, ts)))
            rows = torch.tensor([t + 1 - start for t in ts], device=device)
            prev = prev.index_copy(0, rows, e.view(len(ts), b, -1))
        if scoring is not None and scoring.cut:
            # A step after an address the network skipped reads no previous value.
            cut = [t - start for t in scoring.cut if start <= t < stop]
            prev = prev.index_fill(0, torch.tensor(cut, dtype=torch.long, device=device), 0.0)
        unique = list(dict.fromkeys(keys[start:stop]))
        table = torch.stack([self.address_embeddings[k] for k in unique])
        row_of = {k: i for i, k in enumerate(unique)}
        address = table[torch.tensor([row_of[k] for k in keys[start:stop]], device=device)]
        dist_ids = torch.tensor([DIST_IDS.get(d, len(DIST_NAMES))
                                 for d in sb.dist_names[start:stop]], device=device)
        dist = self.distribution_embedding(dist_ids)
        x = torch.cat([embedding.unsqueeze(0).expand(n, b, -1), prev,
                       address.unsqueeze(1).expand(n, b, -1),
                       dist.unsqueeze(1).expand(n, b, -1)], dim=-1)
        if scoring is None:
            out, (h, c) = self.lstm(x, None if h is None else (h, c))
        else:   # one trace, computed as :meth:`propose` computes it
            out, (h, c) = self._lstm_steps(
                x, self.initial_state(embedding)["hc"] if h is None else (h, c))
        total = torch.zeros(b, device=device)
        for ts, rows_of in by_kind(start, stop):
            head = self.heads[next(iter(rows_of))]
            rows = torch.tensor([t - start for t in ts], device=device)
            raw = per_address(self.heads, rows_of, out[rows].reshape(len(ts) * b, -1)).to(dtype)
            if scoring is not None and scoring.masks:
                raw = scoring.masked(raw, ts)
            lp = head.log_prob(raw, stacked(sb.values, ts, dtype), stacked(sb.stats, ts, dtype))
            total = total + lp.view(len(ts), b).sum(0)
        return total, h, c

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean over the batch's traces of minus the log proposal density of their samples."""
        if not batch.sub_batches:
            raise ValueError("empty batch")
        names = list(self.observation_shapes)
        obs = {n: np.concatenate([sb.observations[n] for sb in batch.sub_batches]) for n in names}
        embedding = self.embed_observations(obs)
        total = torch.zeros((), device=self.device)
        start = 0
        for sb in batch.sub_batches:
            lp = self.sub_batch_log_prob(sb, embedding[start:start + sb.size])
            total = total - lp.sum()
            start += sb.size
        return total / batch.size

    # -- inference -----------------------------------------------------------------------------
    def initial_state(self, embedding: torch.Tensor) -> dict:
        h = torch.zeros(self.config["lstm_depth"], 1, self.config["lstm_dim"])
        return {"embedding": embedding, "hc": (h, h.clone()),
                "prev": torch.zeros(1, self.config["sample_embedding_dim"])}

    def proposing_layer(self, address: str, distribution: Any, shape: tuple) -> int | None:
        """Index in :attr:`sites` of the layers that propose at ``address``; None when the
        network has none that fit (the caller falls back to the prior)."""
        i = self.layer_id(address)
        if i is None:
            return None
        _, _, family, size, k = self.sites[i]
        n = max(math.prod(shape), 1) if shape else 1
        if n != size or family != family_of(distribution) or (
                family == "finite" and support_size(distribution) > k):
            return None
        return i

    def log_prob_of(self, samples: Iterable[tuple[str, Any, Any]],
                    embedding: torch.Tensor) -> tuple[float, list[bool]]:
        """log q of one trace's controlled samples ``(address, distribution, value)``, in
        order, as :meth:`propose` draws them, in one pass: the LSTM over the whole sequence
        and each address's head once over its steps (:meth:`sub_batch_log_prob`, with float64
        densities). Returns the sum over the samples the network proposes and, per sample,
        whether it proposes it (the others are drawn from their prior and do not enter the
        LSTM; the step after one reads no previous value, as after :meth:`skip`)."""
        addresses, names, families, shapes, values, stats, supports = [], [], [], [], [], [], []
        cut: list[int] = []
        masks: dict[int, np.ndarray] = {}
        known: list[bool] = []
        skipped = False
        for address, distribution, value in samples:
            shape = tuple(distribution.batch_shape)
            i = self.proposing_layer(address, distribution, shape)
            known.append(i is not None)
            if i is None:
                skipped = True
                continue
            t = len(addresses)
            if skipped and t:
                cut.append(t)
            skipped = False
            _, _, family, size, k = self.sites[i]
            st = prior_stats(distribution, size)
            if family == "finite" and size == 1:
                mask = self.heads[f"a{i}"].prior_mask(st[0], distribution)
                if mask is not None:
                    masks[t] = mask
            addresses.append(address)
            names.append(distribution.name)
            families.append(family)
            shapes.append(shape)
            values.append(np.asarray(value, dtype=np.float64).reshape(1, size))
            stats.append(st[None])
            supports.append(k)
        sb = SubBatch(tuple(addresses), tuple(names), tuple(families), tuple(shapes), {}, values,
                      stats, tuple(supports), np.zeros(1, dtype=np.int64))
        log_q = self.sub_batch_log_prob(sb, embedding, Scoring(cut, masks))
        return float(log_q[0]), known

    def propose(self, state: dict, address: str, distribution: Any, shape: tuple) -> Any:
        """The proposal at ``address`` for one trace, advancing ``state``; None when the
        network has no (fitting) layers for the address (the caller falls back to the prior)."""
        i = self.proposing_layer(address, distribution, shape)
        if i is None:
            return None
        size = self.sites[i][3]
        key = f"a{i}"
        dist = self.distribution_embedding.weight[DIST_IDS.get(distribution.name, len(DIST_NAMES))]
        x = torch.cat([state["embedding"], state["prev"], self.address_embeddings[key][None],
                       dist[None]], dim=-1)
        out, state["hc"] = self._lstm_steps(x[None], state["hc"])
        out = out[0]
        head: ProposalHead = self.heads[key]
        stats = prior_stats(distribution, size)
        state["key"], state["stats"] = key, stats
        return head.distribution(head.forward(out), stats, tuple(shape), distribution)

    def _lstm_steps(self, x: torch.Tensor, hc: tuple) -> tuple[torch.Tensor, tuple]:
        """The LSTM over ``x`` (steps, 1, input) for one trace, a cell per layer and step:
        ``(output (steps, 1, lstm_dim), (h, c))``. At batch size one the fused kernel's setup
        costs several times the arithmetic, and it builds a new plan for every length."""
        weights = self.lstm.all_weights
        hs, cs = list(hc[0].unbind(0)), list(hc[1].unbind(0))
        outs = []
        for x_t in x.unbind(0):
            for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
                x_t, cs[layer] = torch.lstm_cell(x_t, (hs[layer], cs[layer]), w_ih, w_hh, b_ih,
                                                 b_hh)
                hs[layer] = x_t
            outs.append(x_t)
        return torch.stack(outs), (torch.stack(hs), torch.stack(cs))

    def observe_value(self, state: dict, value: Any) -> None:
        """Feed the value just sampled (after :meth:`propose`) to the next step."""
        key = state.pop("key", None)
        if key is None:
            state["prev"] = torch.zeros(1, self.config["sample_embedding_dim"])
            return
        stats = torch.from_numpy(state.pop("stats")).float()[None]
        v = torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(1, -1))
        # ``forward``: no module hooks, whose call costs more than this small layer.
        state["prev"] = self.sample_embeddings[key].forward(self.heads[key].features(v, stats))

    def skip(self, state: dict) -> None:
        """An address the network does not know: no input from it to the next step."""
        state.pop("key", None)
        state.pop("stats", None)
        state["prev"] = torch.zeros(1, self.config["sample_embedding_dim"])

    # -- files ---------------------------------------------------------------------------------
    def header(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "simulator": self.simulator,
                "observation_shapes": {k: list(v) for k, v in self.observation_shapes.items()},
                "config": self.config, "sites": [list(s) for s in self.sites],
                "traces_trained": self.traces_trained}

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write the network (atomically): weights plus a JSON header naming the simulator.
        ``dtype=torch.float16`` stores the weights at half the size, rounded to 11 significant
        bits (for a network that ships inside a package); :meth:`load` gives float32 either
        way."""
        from ..data.hdf5 import atomic_path

        state = self.state_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        with atomic_path(path) as tmp:
            torch.save({"header": json.dumps(self.header()), "state_dict": state}, tmp)

    @classmethod
    def from_header(cls, header: Mapping[str, Any],
                    embeddings: Embeddings | None = None) -> "ProposalNetwork":
        if header.get("format") != FORMAT:
            raise EtalumisError(f"not a proposal network (format {header.get('format')!r})")
        network = cls(header["observation_shapes"], simulator=header.get("simulator"),
                      embeddings=embeddings,
                      **{**_CONFIG_OF_OLDER_FILES, **header["config"]})
        network.ensure_sites([tuple(s) for s in header["sites"]])
        network.traces_trained = int(header.get("traces_trained", 0))
        return network

    def load_weights(self, header: Mapping[str, Any], state_dict: Mapping[str, Any]) -> None:
        """Grow to the header's sites (in their order) and load weights."""
        self.ensure_sites([tuple(s) for s in header["sites"]])
        self.load_state_dict(state_dict)
        self.traces_trained = int(header.get("traces_trained", 0))

    @classmethod
    def load(cls, path: str | os.PathLike, simulator: str | None = None,
             embeddings: Embeddings | None = None) -> "ProposalNetwork":
        """Read a network file; with ``simulator``, check that it was trained for it.
        ``embeddings`` finds the factory of the observation embedding the file names (see
        :class:`ProposalNetwork`)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such network file")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            header = json.loads(data["header"])
        except Exception as error:
            raise EtalumisError(f"{path} is not a proposal network file ({error})") from None
        if simulator is not None and header.get("simulator") not in (None, simulator):
            raise EtalumisError(f"network {path} was trained for simulator "
                                f"{header.get('simulator')!r}, not {simulator!r}; train a "
                                f"network for {simulator!r} or pass the matching simulator")
        network = cls.from_header(header, embeddings)
        network.load_state_dict(data["state_dict"])
        network.eval()
        return network

    def __repr__(self) -> str:
        return (f"ProposalNetwork(simulator={self.simulator!r}, {len(self.sites)} addresses, "
                f"{sum(p.numel() for p in self.parameters())} parameters)")
