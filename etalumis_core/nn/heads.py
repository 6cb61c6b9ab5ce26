"""Proposal heads: one per address, mapping the LSTM's output to a proposal distribution.

Every head serves one *family* of supports (see :mod:`etalumis_core.data.records`):

======== =================================== ==============================================
family   priors                              proposal
======== =================================== ==============================================
real     Normal (and any real-line prior)    mixture of normals
interval Uniform, Beta, TruncatedNormal      mixture of normals truncated to the support
positive Exponential, Gamma, LogNormal,      mixture of log-normals
         Weibull
count    Poisson                             mixture of Poissons (a proper discrete proposal)
finite   Categorical, Bernoulli, Binomial    softmax over the support (0..K-1, 0..n, {0,1})
======== =================================== ==============================================

A head gives two views of the same proposal: :meth:`ProposalHead.log_prob`, batched torch
log-probabilities for the training loss, and :meth:`ProposalHead.distribution`, a numpy-backed
:mod:`etalumis_core.distributions` object to sample from at inference time. Outputs are
expressed relative to the prior's statistics (mean/stddev, or support bounds), so an
untrained head proposes roughly the prior and a trained one only learns a correction.
Heads of array-valued sites treat the elements as independent.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import distributions as D
from ..data.records import STAT_HIGH, STAT_LOW, STAT_MEAN, STAT_STD

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - _LOG_SQRT_2PI


def _log_normal_cdf_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, stable in both tails (reflect when a > 0)."""
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp(torch.clamp(log_lo - log_hi, max=-1e-12)))


class ProposalDistribution:
    """Independent elementwise proposals for an array-valued site: ``sample`` and ``log_prob``
    (summed over elements) like a distribution."""

    def __init__(self, components: list[D.Distribution], shape: tuple) -> None:
        self.components = components
        self.shape = shape

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([c.sample(rng) for c in self.components]).reshape(self.shape)

    def log_prob(self, value: Any) -> float:
        flat = np.asarray(value, dtype=np.float64).ravel()
        return float(sum(c.log_prob(float(v)) for c, v in zip(self.components, flat)))

    def __repr__(self) -> str:
        return f"ProposalDistribution({len(self.components)} elements, shape {self.shape})"


class ProposalHead(nn.Module):
    """Base class: ``forward(h) -> raw (b, size, num_params)``; see the module docstring."""

    family = ""

    def __init__(self, input_dim: int, size: int, num_params: int, hidden_dim: int) -> None:
        super().__init__()
        self.size = int(size)
        self.num_params = int(num_params)
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, self.size * self.num_params))
        # Small last layer: an untrained head proposes close to the prior.
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # What ``self.net(h)`` computes, without the three module calls (this runs per step).
        first, _, last = self.net
        x = F.linear(F.relu(F.linear(h, first.weight, first.bias)), last.weight, last.bias)
        return x.view(h.shape[0], self.size, self.num_params)

    @property
    def kind(self) -> tuple:
        """Heads of one kind compute :meth:`log_prob` and :meth:`features` alike (they
        differ only in weights), so one call serves the outputs of them all."""
        return type(self), self.size, self.num_params

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Log proposal density of ``value`` (b, size), summed over elements: (b,)."""
        raise NotImplementedError

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        """Numpy proposals of each element from ``raw`` (size, num_params) float64."""
        raise NotImplementedError

    def distribution(self, raw: torch.Tensor, stats: np.ndarray, shape: tuple,
                     prior: Any = None) -> Any:
        """The proposal of one trace's site: ``raw`` (1, size, P), ``stats`` (size, 4); with
        ``prior``, values the prior rules out get no proposal mass."""
        elements = self.element_distributions(raw[0].detach().numpy().astype(np.float64), stats,
                                              prior)
        if shape == () and len(elements) == 1:
            return elements[0]
        return ProposalDistribution(elements, shape)

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Input features of a sampled value for the next step's sample embedding: (b, F)."""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return self.size


class _MixtureHead(ProposalHead):
    def __init__(self, input_dim: int, size: int, hidden_dim: int, mixture_components: int) -> None:
        self.components = int(mixture_components)
        super().__init__(input_dim, size, 3 * self.components, hidden_dim)
        # Spread the initial component means so that the mixture starts multi-modal-capable.
        with torch.no_grad():
            m = self.components
            self.net[-1].bias.view(size, 3 * m)[:, m:2 * m] = torch.linspace(-0.5, 0.5, m) \
                if m > 1 else 0.0

    def _split(self, raw: Any) -> tuple[Any, Any, Any]:
        m = self.components
        return raw[..., :m], raw[..., m:2 * m], raw[..., 2 * m:]


class NormalMixtureHead(_MixtureHead):
    """Mixture of normals on the real line, located and scaled by the prior's mean and stddev."""

    family = "real"

    def _params(self, raw: torch.Tensor, stats: torch.Tensor) -> tuple:
        logits, loc, log_scale = self._split(raw)
        m0, s0 = stats[..., STAT_MEAN:STAT_MEAN + 1], stats[..., STAT_STD:STAT_STD + 1]
        return torch.log_softmax(logits, -1), loc, torch.clamp(log_scale, -9.0, 4.0), m0, s0

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        log_w, loc, log_scale, m0, s0 = self._params(raw, stats)
        z = ((value.unsqueeze(-1) - m0) / s0 - loc) * torch.exp(-log_scale)
        lp = torch.logsumexp(log_w + _normal_log_density(z) - log_scale, -1) - torch.log(s0[..., 0])
        return lp.sum(-1)

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        out = []
        for e in range(self.size):
            logits, loc, log_scale = self._split(raw[e])
            m0, s0 = stats[e, STAT_MEAN], stats[e, STAT_STD]
            scale = np.exp(np.clip(log_scale, -9.0, 4.0)) * s0
            out.append(D.Mixture([D.Normal(float(m0 + s0 * l), float(s))
                                  for l, s in zip(loc, scale)], _softmax(logits)))
        return out

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        z = (value - stats[..., STAT_MEAN]) / stats[..., STAT_STD]
        return torch.clamp(z, -10.0, 10.0)


class TruncatedNormalMixtureHead(_MixtureHead):
    """Mixture of normals truncated to the prior's support [low, high]."""

    family = "interval"

    def _params(self, raw: torch.Tensor, stats: torch.Tensor) -> tuple:
        logits, loc, log_scale = self._split(raw)
        low = stats[..., STAT_LOW:STAT_LOW + 1]
        width = stats[..., STAT_HIGH:STAT_HIGH + 1] - low
        return (torch.log_softmax(logits, -1), torch.sigmoid(loc),
                torch.clamp(log_scale, -9.0, 2.0), low, width)

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        log_w, mean, log_scale, low, width = self._params(raw, stats)
        u = (value.unsqueeze(-1) - low) / width
        scale = torch.exp(log_scale)
        z = (u - mean) / scale
        log_z = _log_normal_cdf_diff(-mean / scale, (1.0 - mean) / scale)
        inside = (u >= 0) & (u <= 1)
        comp = _normal_log_density(z) - log_scale - log_z
        lp = torch.logsumexp(log_w + comp, -1) - torch.log(width[..., 0])
        lp = torch.where(inside[..., 0], lp, torch.full_like(lp, -math.inf))
        return lp.sum(-1)

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        out = []
        for e in range(self.size):
            logits, loc, log_scale = self._split(raw[e])
            low, high = float(stats[e, STAT_LOW]), float(stats[e, STAT_HIGH])
            width = high - low
            mean = low + width / (1.0 + np.exp(-loc))
            scale = np.exp(np.minimum(np.maximum(log_scale, -9.0), 2.0)) * width   # clip, faster
            out.append(TruncatedNormalMixture(_softmax(logits), mean, scale, low, high))
        return out

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        width = stats[..., STAT_HIGH] - stats[..., STAT_LOW]
        return 2.0 * (value - stats[..., STAT_LOW]) / width - 1.0


class TruncatedNormalMixture:
    """``Mixture`` of ``TruncatedNormal(mean[i], scale[i], low, high)`` with weights ``probs``:
    the same draws from the same generator and the same log densities, to the bit, without
    building an object per component and with every component's normaliser computed in one
    call (a proposal is built at every step, and these were most of its cost)."""

    def __init__(self, probs: np.ndarray, mean: np.ndarray, scale: np.ndarray, low: float,
                 high: float) -> None:
        weights = [float(q) for q in probs]
        total = sum(weights)
        self.probs = [q / total for q in weights]
        self._cdf = list(itertools.accumulate(self.probs))
        self._log_probs = [math.log(q) if q > 0.0 else -math.inf for q in self.probs]
        self.mean, self.scale = mean.tolist(), scale.tolist()
        self.low, self.high = low, high
        self._log_scale = [math.log(s) for s in self.scale]
        self._log_z = D._log_ndtr_diff((low - mean) / scale, (high - mean) / scale).tolist()

    def sample(self, rng: np.random.Generator) -> float:
        cdf = self._cdf
        i = bisect.bisect_right(cdf, rng.random() * cdf[-1])
        if i >= len(cdf):
            i = len(cdf) - 1
            while self.probs[i] <= 0.0:
                i -= 1
        m, s = self.mean[i], self.scale[i]
        x = D._truncnorm_std_sample_scalar((self.low - m) / s, (self.high - m) / s, rng.random())
        return min(max(m + s * x, self.low), self.high)

    def log_prob(self, value: Any) -> float:
        x = value if type(value) is float else float(value)
        if not self.low <= x <= self.high:
            return -math.inf
        terms = []
        for log_w, m, s, log_s, log_z in zip(self._log_probs, self.mean, self.scale,
                                             self._log_scale, self._log_z):
            z = (x - m) / s
            r = -0.5 * z * z - log_s - D._LOG_SQRT_2PI - log_z
            terms.append(log_w + (r if r == r else -math.inf))
        return D._logsumexp_list(terms)

    def __repr__(self) -> str:
        return (f"TruncatedNormalMixture({len(self.probs)} components on "
                f"[{self.low}, {self.high}])")


def _log_space(stats: Any, lib: Any) -> tuple[Any, Any]:
    """Location and scale of the log-normal matching the prior's mean and stddev."""
    mean = lib.clip(stats[..., STAT_MEAN], 1e-6, None) if lib is np else \
        torch.clamp(stats[..., STAT_MEAN], min=1e-6)
    ratio = stats[..., STAT_STD] / mean
    sigma = lib.sqrt(lib.log1p(ratio * ratio))
    return lib.log(mean) - 0.5 * sigma * sigma, sigma


class LogNormalMixtureHead(_MixtureHead):
    """Mixture of log-normals on the positive reals (a normal mixture in log space)."""

    family = "positive"

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        logits, loc, log_scale = self._split(raw)
        log_scale = torch.clamp(log_scale, -9.0, 4.0)
        mu0, sigma0 = _log_space(stats, torch)
        positive = value > 0
        log_x = torch.log(torch.where(positive, value, torch.ones_like(value)))
        z = ((log_x - mu0).unsqueeze(-1) / sigma0.unsqueeze(-1) - loc) * torch.exp(-log_scale)
        lp = (torch.logsumexp(torch.log_softmax(logits, -1) + _normal_log_density(z) - log_scale, -1)
              - torch.log(sigma0) - log_x)
        lp = torch.where(positive, lp, torch.full_like(lp, -math.inf))
        return lp.sum(-1)

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        mu0, sigma0 = _log_space(stats, np)
        out = []
        for e in range(self.size):
            logits, loc, log_scale = self._split(raw[e])
            scale = np.exp(np.clip(log_scale, -9.0, 4.0)) * sigma0[e]
            out.append(D.Mixture([D.LogNormal(float(mu0[e] + sigma0[e] * l), float(s))
                                  for l, s in zip(loc, scale)], _softmax(logits)))
        return out

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        mu0, sigma0 = _log_space(stats, torch)
        return torch.clamp((torch.log(torch.clamp(value, min=1e-30)) - mu0) / sigma0, -10.0, 10.0)


class PoissonMixtureHead(ProposalHead):
    """Mixture of Poissons on 0, 1, 2, ...; rates relative to the prior's mean."""

    family = "count"

    def __init__(self, input_dim: int, size: int, hidden_dim: int, mixture_components: int) -> None:
        self.components = int(mixture_components)
        super().__init__(input_dim, size, 2 * self.components, hidden_dim)
        with torch.no_grad():
            m = self.components
            if m > 1:
                self.net[-1].bias.view(size, 2 * m)[:, m:] = torch.linspace(-1.0, 1.0, m)

    def _rates(self, raw: Any, stats: Any, lib: Any) -> tuple[Any, Any]:
        m = self.components
        logits, log_ratio = raw[..., :m], raw[..., m:]
        if lib is np:
            base = np.maximum(stats[..., STAT_MEAN], 0.1)[..., None]
            return logits, base * np.exp(np.clip(log_ratio, -10.0, 10.0))
        base = torch.clamp(stats[..., STAT_MEAN], min=0.1).unsqueeze(-1)
        return logits, base * torch.exp(torch.clamp(log_ratio, -10.0, 10.0))

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        logits, rate = self._rates(raw, stats, torch)
        k = value.unsqueeze(-1)
        valid = (value >= 0) & (value == torch.floor(value))
        k = torch.where(valid.unsqueeze(-1), k, torch.zeros_like(k))
        comp = k * torch.log(rate) - rate - torch.lgamma(k + 1.0)
        lp = torch.logsumexp(torch.log_softmax(logits, -1) + comp, -1)
        lp = torch.where(valid, lp, torch.full_like(lp, -math.inf))
        return lp.sum(-1)

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        logits, rate = self._rates(raw, stats, np)
        return [D.Mixture([D.Poisson(float(r)) for r in rate[e]], _softmax(logits[e]))
                for e in range(self.size)]

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        mean = torch.clamp(stats[..., STAT_MEAN], min=0.1)
        return torch.clamp((value - mean) / torch.sqrt(mean), -10.0, 10.0)


class CategoricalHead(ProposalHead):
    """Softmax over a finite support ``low .. low+K-1`` (Categorical, Bernoulli, Binomial);
    values outside a trace's own support (a smaller Binomial ``n``) are masked out."""

    family = "finite"

    def __init__(self, input_dim: int, size: int, hidden_dim: int, num_categories: int) -> None:
        self.num_categories = max(int(num_categories), 1)
        super().__init__(input_dim, size, self.num_categories, hidden_dim)

    def _masked(self, raw: Any, stats: Any, lib: Any) -> Any:
        k = self.num_categories
        n = stats[..., STAT_HIGH] - stats[..., STAT_LOW] + 1
        if lib is np:
            mask = np.arange(k) < n[..., None]
            return np.where(mask, raw, -np.inf)
        mask = torch.arange(k, dtype=raw.dtype, device=raw.device) < n.unsqueeze(-1)
        return torch.where(mask, raw, torch.full_like(raw, -math.inf))

    def log_prob(self, raw: torch.Tensor, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(self._masked(raw, stats, torch), -1)
        index = value - stats[..., STAT_LOW]
        valid = (index >= 0) & (index < self.num_categories) & (index == torch.floor(index))
        safe = torch.where(valid, index, torch.zeros_like(index)).long()
        lp = torch.gather(log_p, -1, safe.unsqueeze(-1))[..., 0]
        lp = torch.where(valid, lp, torch.full_like(lp, -math.inf))
        return lp.sum(-1)

    def element_distributions(self, raw: np.ndarray, stats: np.ndarray,
                              prior: Any = None) -> list[D.Distribution]:
        masked = self._masked(raw, stats, np)
        out = []
        for e in range(self.size):
            n = int(stats[e, STAT_HIGH] - stats[e, STAT_LOW]) + 1
            low = stats[e, STAT_LOW]
            logits = masked[e][:n]
            if prior is not None and self.size == 1:
                possible = self.prior_mask(stats[e], prior)
                if possible is not None:
                    logits = np.where(possible, logits, -np.inf)
            probs = _softmax(logits)
            out.append(D.Categorical(probs) if low == 0 else _Shifted(D.Categorical(probs), low))
        return out

    @staticmethod
    def prior_mask(stats: np.ndarray, prior: Any) -> np.ndarray | None:
        """Which of the values ``low .. high`` of a scalar site (``stats`` (4,)) the prior
        allows; None when it allows all, or none (then nothing is masked). Categories the
        prior gives no mass would get a trace of weight zero, so the proposal leaves them out."""
        n = int(stats[STAT_HIGH] - stats[STAT_LOW]) + 1
        values = np.arange(n) + stats[STAT_LOW]
        if prior.batch_shape == () and n <= 64:
            # One at a time: a scalar prior scores a number several times faster than an array.
            possible = np.array([math.isfinite(prior.log_prob(float(v))) for v in values])
        else:
            possible = np.isfinite(np.asarray(prior.log_prob(values)))
        return possible if possible.any() and not possible.all() else None

    def features(self, value: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        index = torch.clamp(value - stats[..., STAT_LOW], 0, self.num_categories - 1).long()
        onehot = torch.nn.functional.one_hot(index, self.num_categories).to(value.dtype)
        return onehot.reshape(value.shape[0], -1)

    @property
    def feature_dim(self) -> int:
        return self.size * self.num_categories


class _Shifted:
    """A finite proposal on ``low .. low+K-1`` (a support not starting at 0)."""

    def __init__(self, base: D.Distribution, low: float) -> None:
        self.base = base
        self.low = int(low)

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.base.sample(rng)) + self.low

    def log_prob(self, value: Any) -> float:
        return float(self.base.log_prob(float(value) - self.low))


def _softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x)
    p = np.exp(x)
    return p / p.sum()


HEADS = {"real": NormalMixtureHead, "interval": TruncatedNormalMixtureHead,
         "positive": LogNormalMixtureHead, "count": PoissonMixtureHead,
         "finite": CategoricalHead}


def make_head(family: str, input_dim: int, size: int, hidden_dim: int, mixture_components: int,
              support_size: int) -> ProposalHead:
    """The head of a family (see the module docstring)."""
    if family == "finite":
        return CategoricalHead(input_dim, size, hidden_dim, support_size)
    return HEADS[family](input_dim, size, hidden_dim, mixture_components)
