"""Probability distributions carried by ``sample`` and ``observe`` messages.

Every random choice a simulator makes goes through one of these objects, usually constructed,
sampled and scored exactly once, so they are built for the scalar case: scalar parameters stay
Python floats, ``log_prob`` uses :mod:`math`, ``sample`` makes one scalar call on the
``numpy.random.Generator``. Only batched (array) parameters take the numpy path.

:data:`TYPES` is the one table of the distribution types: names, parameter names, PPX ids and
the ids stored in datasets. Parameter names are the PPX wire field names, so the codec can go
from a distribution to its table and back with :meth:`Distribution.params` and
:meth:`Distribution.from_params`.

This module imports nothing from the rest of the package and never imports torch: tensors are
recognised by duck typing. :mod:`scipy.special` is imported on first use (it costs ~0.2 s): only
batched code, :class:`TruncatedNormal` and a few moment properties need it.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any, ClassVar, NamedTuple, Sequence

import numpy as np

__all__ = [
    "Support", "Distribution", "Normal", "Uniform", "Categorical", "Poisson", "Bernoulli", "Beta",
    "Exponential", "Gamma", "LogNormal", "Binomial", "Weibull", "TruncatedNormal", "Mixture",
    "PPX_TYPES", "BY_NAME", "DistributionType", "TYPES",
]


class DistributionType(NamedTuple):
    """One row of :data:`TYPES`."""

    name: str
    params: tuple[str, ...]  # parameter names: PPX field names, in PPX declaration order
    ppx: int                 # id in PPX's ``Distribution`` union; 0: no PPX encoding
    stored: int              # id written into datasets (never renumber)


# The one table of distribution types. The classes below take their ``param_names`` and
# ``ppx_type`` from it; the PPX codec (ppx/wire.py) and the dataset format (data/records.py)
# derive their tables from it.
TYPES: tuple[DistributionType, ...] = (
    DistributionType("Normal", ("mean", "stddev"), ppx=1, stored=0),
    DistributionType("Uniform", ("low", "high"), ppx=2, stored=1),
    DistributionType("Categorical", ("probs",), ppx=3, stored=2),
    DistributionType("Poisson", ("rate",), ppx=4, stored=3),
    DistributionType("Bernoulli", ("probs",), ppx=5, stored=4),
    DistributionType("Beta", ("concentration1", "concentration0"), ppx=6, stored=5),
    DistributionType("Exponential", ("rate",), ppx=7, stored=6),
    DistributionType("Gamma", ("concentration", "rate"), ppx=8, stored=7),
    DistributionType("LogNormal", ("loc", "scale"), ppx=9, stored=8),
    DistributionType("Binomial", ("total_count", "probs"), ppx=10, stored=9),
    DistributionType("Weibull", ("scale", "concentration"), ppx=11, stored=10),
    DistributionType("TruncatedNormal", ("mean", "stddev", "low", "high"), ppx=0, stored=11),
    DistributionType("Mixture", ("distributions", "probs"), ppx=0, stored=12),
)
_TYPE_OF = {t.name: t for t in TYPES}

_INF = math.inf
_NINF = -math.inf
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALF = math.log(0.5)
_SQRT1_2 = math.sqrt(0.5)
_log = math.log
_log1p = math.log1p
_exp = math.exp
_sqrt = math.sqrt
_lgamma = math.lgamma
# math.exp raises OverflowError above this instead of returning inf.
_EXP_MAX = 709.0

_special_module: Any = None


def _special() -> Any:
    """scipy.special, imported on first use to keep ``import etalumis_core`` fast."""
    global _special_module
    if _special_module is None:
        import scipy.special

        _special_module = scipy.special
    return _special_module


# ----------------------------------------------------------------------------------------------
# Support


class Support:
    """The set a distribution puts its mass on.

    ``kind`` is one of ``real``, ``interval``, ``positive``, ``unit_interval``,
    ``nonnegative_integer``, ``integer_interval``, ``boolean``; ``low``/``high`` are the bounds
    where they apply (floats, or arrays for a batched distribution), else None.
    """

    __slots__ = ("kind", "low", "high")
    KINDS: ClassVar[frozenset[str]] = frozenset({
        "real", "interval", "positive", "unit_interval", "nonnegative_integer",
        "integer_interval", "boolean"})

    def __init__(self, kind: str, low: Any = None, high: Any = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"Support: kind must be one of {sorted(self.KINDS)}, got {kind!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Support is immutable")

    @property
    def discrete(self) -> bool:
        return self.kind in ("nonnegative_integer", "integer_interval", "boolean")

    def contains(self, value: Any) -> Any:
        """Whether ``value`` lies in the support (bool, or a bool array for array input)."""
        x = _as_array(value)
        with np.errstate(invalid="ignore"):
            ok = ~np.isnan(x)
            if self.discrete:
                ok &= np.isfinite(x) & (x == np.floor(x))
            if self.low is not None:
                ok &= x >= self.low
            if self.high is not None:
                ok &= x <= self.high
        return bool(ok) if ok.ndim == 0 else ok

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Support):
            return NotImplemented
        return (self.kind == other.kind and _same(self.low, other.low)
                and _same(self.high, other.high))

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        if self.low is None and self.high is None:
            return f"Support({self.kind!r})"
        return f"Support({self.kind!r}, low={_fmt_param(self.low)}, high={_fmt_param(self.high)})"

    def __reduce__(self) -> tuple:
        return (Support, (self.kind, self.low, self.high))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


_REAL = Support("real")
_POSITIVE = Support("positive", 0.0, None)
_UNIT = Support("unit_interval", 0.0, 1.0)
_NONNEG_INT = Support("nonnegative_integer", 0, None)
_BOOLEAN = Support("boolean", 0, 1)


# ----------------------------------------------------------------------------------------------
# Conversion and validation helpers


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _convert(x: Any, dist: str, pname: str) -> Any:
    """A Python float for a scalar parameter, a float64 array for a batched one."""
    if type(x) is float:
        return x
    if type(x) is int:
        return float(x)
    try:
        a = _as_array(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{dist}: {pname} must be a number or an array of numbers, "
                         f"got {x!r}") from exc
    if a.ndim == 0:
        return float(a)
    return a


def _err(dist: str, pname: str, value: Any, what: str) -> ValueError:
    return ValueError(f"{dist}: {pname} must be {what}, got {value!r}")


def _require(ok: np.ndarray, dist: str, pname: str, arr: np.ndarray, what: str) -> None:
    """Raise naming the first offending element of ``arr`` unless ``ok`` holds everywhere."""
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        bad = float(np.broadcast_to(arr, ok.shape)[idx])
        raise ValueError(f"{dist}: {pname} must be {what}, got {bad!r} "
                         f"(at index {idx} of an array of shape {tuple(np.shape(arr))})")


def _check_finite(x: Any, dist: str, pname: str) -> None:
    if type(x) is float:
        if not -_INF < x < _INF:
            raise _err(dist, pname, x, "finite")
    else:
        _require(np.isfinite(x), dist, pname, x, "finite")


def _check_positive(x: Any, dist: str, pname: str) -> None:
    if type(x) is float:
        if not 0.0 < x < _INF:
            raise _err(dist, pname, x, "positive and finite")
    else:
        with np.errstate(invalid="ignore"):
            _require((x > 0.0) & (x < _INF), dist, pname, x, "positive and finite")


def _check_nonnegative(x: Any, dist: str, pname: str) -> None:
    if type(x) is float:
        if not 0.0 <= x < _INF:
            raise _err(dist, pname, x, "non-negative and finite")
    else:
        with np.errstate(invalid="ignore"):
            _require((x >= 0.0) & (x < _INF), dist, pname, x, "non-negative and finite")


def _check_probability(x: Any, dist: str, pname: str) -> None:
    if type(x) is float:
        if not 0.0 <= x <= 1.0:
            raise _err(dist, pname, x, "a probability in [0, 1]")
    else:
        with np.errstate(invalid="ignore"):
            _require((x >= 0.0) & (x <= 1.0), dist, pname, x, "a probability in [0, 1]")


def _check_less(lo: Any, hi: Any, dist: str) -> None:
    bad = ~(np.asarray(lo) < np.asarray(hi))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{dist}: low must be less than high, got low="
            f"{float(np.broadcast_to(lo, bad.shape)[idx])!r}, high="
            f"{float(np.broadcast_to(hi, bad.shape)[idx])!r} (at index {idx})")


def _batch_shape(dist: str, **params: Any) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(np.shape(v) for v in params.values())))
    except ValueError:
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in params.items())
        raise ValueError(f"{dist}: parameter shapes must broadcast together, got {shapes}") \
            from None


def _fmt_param(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return np.array2string(x, precision=6, threshold=8, separator=", ")
    return repr(x)


def _finish(out: Any) -> Any:
    """float for a 0-d result, the array otherwise."""
    out = np.asarray(out)
    return float(out) if out.ndim == 0 else out


def _integer_mask(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & (x == np.floor(x))


def _xlogy_s(c: float, x: float) -> float:
    """c * log(x) for x >= 0 with 0 * log(0) = 0 (the density's limit at an endpoint)."""
    if c == 0.0:
        return 0.0
    if x == 0.0:
        return _NINF if c > 0.0 else _INF
    return c * _log(x)


def _xlog1py_s(c: float, y: float) -> float:
    """c * log1p(y) for y >= -1 with 0 * log(0) = 0."""
    if c == 0.0:
        return 0.0
    if y == -1.0:
        return _NINF if c > 0.0 else _INF
    return c * _log1p(y)


def _logsumexp_list(values: Sequence[float]) -> float:
    m = max(values)
    if m == _NINF or m == _INF:
        return m
    return m + _log(math.fsum(_exp(v - m) for v in values))


# ----------------------------------------------------------------------------------------------
# Base class


class Distribution:
    """Base of all distributions.

    Subclasses keep scalar parameters as Python floats (``_scalar`` true) and batched ones as
    float64 arrays. ``_lp`` scores one Python number under a scalar distribution with
    :mod:`math`; ``_lp_batch`` scores an array with numpy (and must also work with scalar
    parameters, which is how an array value is scored under a scalar distribution).
    """

    __slots__ = ()
    name: ClassVar[str] = "Distribution"
    ppx_type: ClassVar[int] = 0
    discrete: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ()
    # What engines append to a base address (``{base}__{address_suffix}__{instance}``): the
    # name, as the reference PPX engine (pyprob) writes it; Categorical adds its size.
    address_suffix: ClassVar[str] = "Distribution"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        row = _TYPE_OF.get(cls.name)
        if row is not None:  # a core type: its ids and parameter names come from TYPES
            cls.param_names, cls.ppx_type = row.params, row.ppx
        if "address_suffix" not in cls.__dict__:
            cls.address_suffix = cls.name

    # -- scoring ---------------------------------------------------------------------------
    def log_prob(self, value: Any) -> Any:
        """Log density (or mass) of ``value``; -inf outside the support.

        A float for a scalar distribution and scalar value, else an elementwise array of the
        broadcast of the value's shape and the batch shape.
        """
        if self._scalar:  # type: ignore[attr-defined]
            t = type(value)
            if t is float or t is int:
                return self._lp(value)
            v = _as_array(value)
            if v.ndim == 0:
                return self._lp(float(v))
            return self._lp_batch(v)
        return _finish(self._lp_batch(_as_array(value)))

    def _lp(self, x: float) -> float:
        raise NotImplementedError

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw: a Python float/int for a scalar distribution, an array if batched."""
        raise NotImplementedError

    # -- shape and moments -----------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._shape  # type: ignore[attr-defined]

    @property
    def variance(self) -> Any:
        s = self.stddev  # type: ignore[attr-defined]
        return s * s

    def _bcast(self, x: Any) -> Any:
        if self._scalar:  # type: ignore[attr-defined]
            return float(x)
        return np.array(np.broadcast_to(x, self._shape), dtype=np.float64)  # type: ignore

    # -- PPX parameters --------------------------------------------------------------------
    def _param_values(self) -> tuple:
        raise NotImplementedError

    def params(self) -> dict[str, np.ndarray]:
        """Parameter name (PPX field name) -> float64 array."""
        return {k: np.asarray(v, dtype=np.float64)
                for k, v in zip(self.param_names, self._param_values())}

    @classmethod
    def from_params(cls, **params: Any) -> "Distribution":
        """Rebuild a distribution from :meth:`params` output (e.g. decoded PPX tensors)."""
        return cls(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt_param(v)}"
                         for k, v in zip(self.param_names, self._param_values()))
        return f"{self.name}({args})"

    def __reduce__(self) -> tuple:
        return (type(self), self._param_values())


# ----------------------------------------------------------------------------------------------
# Continuous distributions


class Normal(Distribution):
    """Normal(mean, stddev) on the real line."""

    __slots__ = ("_mean", "_stddev", "_scalar", "_shape")
    name = "Normal"
    discrete = False

    def __init__(self, mean: Any, stddev: Any) -> None:
        m = mean if type(mean) is float else _convert(mean, "Normal", "mean")
        s = stddev if type(stddev) is float else _convert(stddev, "Normal", "stddev")
        if type(m) is float and type(s) is float:
            if not -_INF < m < _INF:
                raise _err("Normal", "mean", m, "finite")
            if not 0.0 < s < _INF:
                raise _err("Normal", "stddev", s, "positive and finite")
            self._scalar = True
            self._shape = ()
        else:
            _check_finite(m, "Normal", "mean")
            _check_positive(s, "Normal", "stddev")
            self._scalar = False
            self._shape = _batch_shape("Normal", mean=m, stddev=s)
        self._mean = m
        self._stddev = s

    def log_prob(self, value: Any) -> Any:
        # Inlined scalar path: this is the single hottest call of every engine.
        if self._scalar and (type(value) is float or type(value) is int):
            s = self._stddev
            z = (value - self._mean) / s
            r = -0.5 * z * z - _log(s) - _LOG_SQRT_2PI
            return r if r == r else _NINF
        return Distribution.log_prob(self, value)

    def _lp(self, x: float) -> float:
        s = self._stddev
        z = (x - self._mean) / s
        r = -0.5 * z * z - _log(s) - _LOG_SQRT_2PI
        return r if r == r else _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            z = (x - self._mean) / self._stddev
            out = -0.5 * z * z - np.log(self._stddev) - _LOG_SQRT_2PI
        return np.where(np.isnan(out), _NINF, out)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return rng.normal(self._mean, self._stddev)
        return rng.normal(self._mean, self._stddev, size=self._shape)

    @property
    def mean(self) -> Any:
        return self._bcast(self._mean)

    @property
    def stddev(self) -> Any:
        return self._bcast(self._stddev)

    @property
    def support(self) -> Support:
        return _REAL

    def _param_values(self) -> tuple:
        return (self._mean, self._stddev)


class Uniform(Distribution):
    """Uniform(low, high) on the closed interval [low, high]."""

    __slots__ = ("_low", "_high", "_scalar", "_shape")
    name = "Uniform"
    discrete = False

    def __init__(self, low: Any, high: Any) -> None:
        lo = low if type(low) is float else _convert(low, "Uniform", "low")
        hi = high if type(high) is float else _convert(high, "Uniform", "high")
        if type(lo) is float and type(hi) is float:
            if not -_INF < lo < _INF:
                raise _err("Uniform", "low", lo, "finite")
            if not -_INF < hi < _INF:
                raise _err("Uniform", "high", hi, "finite")
            if not lo < hi:
                raise ValueError(f"Uniform: low must be less than high, got low={lo!r}, "
                                 f"high={hi!r}")
            self._scalar = True
            self._shape = ()
        else:
            _check_finite(lo, "Uniform", "low")
            _check_finite(hi, "Uniform", "high")
            self._shape = _batch_shape("Uniform", low=lo, high=hi)
            _check_less(lo, hi, "Uniform")
            self._scalar = False
        self._low = lo
        self._high = hi

    def _lp(self, x: float) -> float:
        if self._low <= x <= self._high:
            return -_log(self._high - self._low)
        return _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            inside = (x >= self._low) & (x <= self._high)
        return np.where(inside, -np.log(np.asarray(self._high - self._low)), _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            # Scalar arithmetic on rng.random() is ~4x faster than rng.uniform(low, high).
            return self._low + (self._high - self._low) * rng.random()
        return rng.uniform(self._low, self._high, size=self._shape)

    @property
    def low(self) -> Any:
        return self._low

    @property
    def high(self) -> Any:
        return self._high

    @property
    def mean(self) -> Any:
        return self._bcast(0.5 * (self._low + self._high))

    @property
    def stddev(self) -> Any:
        return self._bcast((self._high - self._low) / math.sqrt(12.0))

    @property
    def support(self) -> Support:
        if self._scalar:
            return Support("interval", self._low, self._high)
        return Support("interval", self._bcast(self._low), self._bcast(self._high))

    def _param_values(self) -> tuple:
        return (self._low, self._high)


class Beta(Distribution):
    """Beta(concentration1, concentration0) on [0, 1] (alpha = concentration1)."""

    __slots__ = ("_a", "_b", "_scalar", "_shape")
    name = "Beta"
    discrete = False

    def __init__(self, concentration1: Any, concentration0: Any) -> None:
        a = _convert(concentration1, "Beta", "concentration1")
        b = _convert(concentration0, "Beta", "concentration0")
        _check_positive(a, "Beta", "concentration1")
        _check_positive(b, "Beta", "concentration0")
        self._scalar = type(a) is float and type(b) is float
        self._shape = () if self._scalar else _batch_shape(
            "Beta", concentration1=a, concentration0=b)
        self._a = a
        self._b = b

    def _lp(self, x: float) -> float:
        if not 0.0 <= x <= 1.0:
            return _NINF
        a, b = self._a, self._b
        lbeta = _lgamma(a) + _lgamma(b) - _lgamma(a + b)
        return _xlogy_s(a - 1.0, x) + _xlog1py_s(b - 1.0, -x) - lbeta

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        sp = _special()
        with np.errstate(all="ignore"):
            inside = (x >= 0.0) & (x <= 1.0)
            out = (sp.xlogy(self._a - 1.0, x) + sp.xlog1py(self._b - 1.0, -x)
                   - sp.betaln(self._a, self._b))
        return np.where(inside, out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return float(rng.beta(self._a, self._b))
        return rng.beta(self._a, self._b, size=self._shape)

    @property
    def concentration1(self) -> Any:
        return self._a

    @property
    def concentration0(self) -> Any:
        return self._b

    @property
    def mean(self) -> Any:
        return self._bcast(self._a / (self._a + self._b))

    @property
    def stddev(self) -> Any:
        a, b = self._a, self._b
        t = a + b
        return self._bcast(np.sqrt(a * b / (t * t * (t + 1.0))))

    @property
    def support(self) -> Support:
        return _UNIT

    def _param_values(self) -> tuple:
        return (self._a, self._b)


class Exponential(Distribution):
    """Exponential(rate) on [0, inf)."""

    __slots__ = ("_rate", "_scalar", "_shape")
    name = "Exponential"
    discrete = False

    def __init__(self, rate: Any) -> None:
        r = rate if type(rate) is float else _convert(rate, "Exponential", "rate")
        _check_positive(r, "Exponential", "rate")
        self._scalar = type(r) is float
        self._shape = () if self._scalar else tuple(np.shape(r))
        self._rate = r

    def _lp(self, x: float) -> float:
        if 0.0 <= x:
            return _log(self._rate) - self._rate * x
        return _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = np.log(self._rate) - self._rate * x
            return np.where(x >= 0.0, out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return rng.exponential(1.0 / self._rate)
        return rng.exponential(1.0 / self._rate, size=self._shape)

    @property
    def rate(self) -> Any:
        return self._rate

    @property
    def mean(self) -> Any:
        return self._bcast(1.0 / self._rate)

    @property
    def stddev(self) -> Any:
        return self._bcast(1.0 / self._rate)

    @property
    def support(self) -> Support:
        return _POSITIVE

    def _param_values(self) -> tuple:
        return (self._rate,)


class Gamma(Distribution):
    """Gamma(concentration, rate) on [0, inf) (shape ``concentration``, scale ``1/rate``)."""

    __slots__ = ("_a", "_rate", "_scalar", "_shape")
    name = "Gamma"
    discrete = False

    def __init__(self, concentration: Any, rate: Any) -> None:
        a = _convert(concentration, "Gamma", "concentration")
        r = _convert(rate, "Gamma", "rate")
        _check_positive(a, "Gamma", "concentration")
        _check_positive(r, "Gamma", "rate")
        self._scalar = type(a) is float and type(r) is float
        self._shape = () if self._scalar else _batch_shape("Gamma", concentration=a, rate=r)
        self._a = a
        self._rate = r

    def _lp(self, x: float) -> float:
        if not 0.0 <= x < _INF:
            return _NINF
        a, r = self._a, self._rate
        return a * _log(r) + _xlogy_s(a - 1.0, x) - r * x - _lgamma(a)

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        sp = _special()
        with np.errstate(all="ignore"):
            a, r = self._a, self._rate
            out = a * np.log(r) + sp.xlogy(a - 1.0, x) - r * x - sp.gammaln(a)
            return np.where((x >= 0.0) & (x < _INF), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return rng.gamma(self._a, 1.0 / self._rate)
        return rng.gamma(self._a, 1.0 / self._rate, size=self._shape)

    @property
    def concentration(self) -> Any:
        return self._a

    @property
    def rate(self) -> Any:
        return self._rate

    @property
    def mean(self) -> Any:
        return self._bcast(self._a / self._rate)

    @property
    def stddev(self) -> Any:
        return self._bcast(np.sqrt(self._a) / self._rate)

    @property
    def support(self) -> Support:
        return _POSITIVE

    def _param_values(self) -> tuple:
        return (self._a, self._rate)


class LogNormal(Distribution):
    """LogNormal(loc, scale): exp of a Normal(loc, scale); support (0, inf)."""

    __slots__ = ("_loc", "_scale", "_scalar", "_shape")
    name = "LogNormal"
    discrete = False

    def __init__(self, loc: Any, scale: Any) -> None:
        m = loc if type(loc) is float else _convert(loc, "LogNormal", "loc")
        s = scale if type(scale) is float else _convert(scale, "LogNormal", "scale")
        _check_finite(m, "LogNormal", "loc")
        _check_positive(s, "LogNormal", "scale")
        self._scalar = type(m) is float and type(s) is float
        self._shape = () if self._scalar else _batch_shape("LogNormal", loc=m, scale=s)
        self._loc = m
        self._scale = s

    def _lp(self, x: float) -> float:
        if not 0.0 < x < _INF:
            return _NINF
        lx = _log(x)
        s = self._scale
        z = (lx - self._loc) / s
        return -0.5 * z * z - lx - _log(s) - _LOG_SQRT_2PI

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            lx = np.log(x)
            z = (lx - self._loc) / self._scale
            out = -0.5 * z * z - lx - np.log(self._scale) - _LOG_SQRT_2PI
            return np.where((x > 0.0) & (x < _INF), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return rng.lognormal(self._loc, self._scale)
        return rng.lognormal(self._loc, self._scale, size=self._shape)

    @property
    def loc(self) -> Any:
        return self._loc

    @property
    def scale(self) -> Any:
        return self._scale

    @property
    def mean(self) -> Any:
        with np.errstate(over="ignore"):
            return self._bcast(np.exp(self._loc + 0.5 * np.asarray(self._scale) ** 2))

    @property
    def stddev(self) -> Any:
        s2 = np.asarray(self._scale, dtype=np.float64) ** 2
        with np.errstate(over="ignore"):
            var = np.expm1(s2) * np.exp(2.0 * np.asarray(self._loc) + s2)
        return self._bcast(np.sqrt(var))

    @property
    def support(self) -> Support:
        return _POSITIVE

    def _param_values(self) -> tuple:
        return (self._loc, self._scale)


class Weibull(Distribution):
    """Weibull(scale, concentration) on [0, inf): P(X > x) = exp(-(x/scale)**concentration)."""

    __slots__ = ("_scale", "_k", "_scalar", "_shape")
    name = "Weibull"
    discrete = False

    def __init__(self, scale: Any, concentration: Any) -> None:
        lam = _convert(scale, "Weibull", "scale")
        k = _convert(concentration, "Weibull", "concentration")
        _check_positive(lam, "Weibull", "scale")
        _check_positive(k, "Weibull", "concentration")
        self._scalar = type(lam) is float and type(k) is float
        self._shape = () if self._scalar else _batch_shape(
            "Weibull", scale=lam, concentration=k)
        self._scale = lam
        self._k = k

    def _lp(self, x: float) -> float:
        if not 0.0 <= x < _INF:
            return _NINF
        lam, k = self._scale, self._k
        if x == 0.0:
            return _log(k / lam) + _xlogy_s(k - 1.0, 0.0)
        lz = _log(x / lam)
        t = k * lz
        if t > _EXP_MAX:
            return _NINF
        return _log(k / lam) + (k - 1.0) * lz - _exp(t)

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        sp = _special()
        with np.errstate(all="ignore"):
            lam, k = self._scale, self._k
            z = x / lam
            out = np.log(k / lam) + sp.xlogy(k - 1.0, z) - np.power(z, k)
            return np.where((x >= 0.0) & (x < _INF), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return self._scale * rng.weibull(self._k)
        return self._scale * rng.weibull(self._k, size=self._shape)

    @property
    def scale(self) -> Any:
        return self._scale

    @property
    def concentration(self) -> Any:
        return self._k

    @property
    def mean(self) -> Any:
        sp = _special()
        with np.errstate(over="ignore"):
            return self._bcast(self._scale * np.exp(sp.gammaln(1.0 + 1.0 / np.asarray(self._k))))

    @property
    def stddev(self) -> Any:
        # Var = scale^2 (G(1+2/k) - G(1+1/k)^2), written to avoid overflow for small k and
        # cancellation for large k.
        sp = _special()
        k = np.asarray(self._k, dtype=np.float64)
        g1 = sp.gammaln(1.0 + 1.0 / k)
        g2 = sp.gammaln(1.0 + 2.0 / k)
        with np.errstate(over="ignore"):
            var = np.exp(g2) * -np.expm1(2.0 * g1 - g2)
        return self._bcast(self._scale * np.sqrt(np.maximum(var, 0.0)))

    @property
    def support(self) -> Support:
        return _POSITIVE

    def _param_values(self) -> tuple:
        return (self._scale, self._k)


# ----------------------------------------------------------------------------------------------
# Truncated normal


def _log_ndtr_diff(a: Any, b: Any) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails and across zero."""
    sp = _special()
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): move the interval so its lower end is <= 0, where
    # the normal CDF has full relative precision.
    flip = a > 0.0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    straddles = hi > 0.0
    with np.errstate(all="ignore"):
        # Interval straddling zero: erf(hi) and erf(lo) have opposite signs, no cancellation.
        across = np.log(0.5 * (sp.erf(hi * _SQRT1_2) - sp.erf(lo * _SQRT1_2)))
        if straddles.all():   # the common case, spared the tail's four calls
            return np.asarray(across)
        lhi = sp.log_ndtr(hi)
        tail = lhi + np.log(-np.expm1(sp.log_ndtr(lo) - lhi))
    return np.where(straddles, across, tail)


def _truncnorm_std_sample(a: Any, b: Any, u: Any) -> np.ndarray:
    """Inverse-CDF draw of a standard normal truncated to [a, b] from uniforms ``u``.

    Works in log space and always inverts the CDF in the tail the point lies in, so intervals
    far in either tail (where Phi underflows or rounds to 1) sample correctly.
    """
    sp = _special()
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    flip = a > 0.0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    with np.errstate(all="ignore"):
        logz = _log_ndtr_diff(lo, hi)
        # p = Phi(lo) + u Z and 1 - p = Phi(-hi) + (1 - u) Z, both in log space.
        logp = np.logaddexp(sp.log_ndtr(lo), np.log(u) + logz)
        logq = np.logaddexp(sp.log_ndtr(-hi), np.log1p(-u) + logz)
        x = np.where(logp < _LOG_HALF, sp.ndtri_exp(logp), -sp.ndtri_exp(logq))
    x = np.clip(x, lo, hi)
    return np.where(flip, -x, x)


_inv_cdf: Any = None
_gl_cache: Any = None


def _gauss_legendre() -> tuple[np.ndarray, np.ndarray]:
    global _gl_cache
    if _gl_cache is None:
        _gl_cache = np.polynomial.legendre.leggauss(24)
    return _gl_cache


def _truncnorm_std_sample_scalar(a: float, b: float, u: float) -> float:
    """Scalar version of :func:`_truncnorm_std_sample` with :mod:`math` (~1 us, not ~30).

    Used when the interval's lower end (after the flip) is above -30, where Phi neither
    underflows nor loses relative precision; farther tails go to the log-space version.
    """
    global _inv_cdf
    flip = a > 0.0
    lo, hi = (-b, -a) if flip else (a, b)
    if lo < -30.0:
        return float(_truncnorm_std_sample(a, b, u))
    if _inv_cdf is None:
        import statistics  # C-accelerated AS241; imported lazily (~15 ms)

        _inv_cdf = statistics.NormalDist().inv_cdf
    p_lo = 0.5 * math.erfc(-lo * _SQRT1_2)
    q_hi = 0.5 * math.erfc(hi * _SQRT1_2)  # Phi(-hi)
    if hi > 0.0:
        z = 0.5 * (math.erf(hi * _SQRT1_2) - math.erf(lo * _SQRT1_2))
    else:
        z = 0.5 * math.erfc(-hi * _SQRT1_2) - p_lo
    p = p_lo + u * z
    try:
        if p < 0.5:
            x = _inv_cdf(p)
        else:
            x = -_inv_cdf(q_hi + (1.0 - u) * z)
    except ValueError:  # p rounded to 0 or 1 (u at an edge): the interval's end
        x = lo if p < 0.5 else hi
    x = min(max(x, lo), hi)
    return -x if flip else x


class TruncatedNormal(Distribution):
    """Normal(mean, stddev) restricted to [low, high] and renormalised.

    ``mean``/``stddev`` as *properties* are the moments of the truncated distribution; the
    parameters themselves are :attr:`loc` and :attr:`scale` (and ``params()``' ``mean`` and
    ``stddev``). ``low`` may be -inf and ``high`` +inf for one-sided truncation.
    """

    __slots__ = ("_mean", "_stddev", "_low", "_high", "_scalar", "_shape", "_logz")
    name = "TruncatedNormal"
    discrete = False

    def __init__(self, mean: Any, stddev: Any, low: Any, high: Any) -> None:
        n = "TruncatedNormal"
        m = _convert(mean, n, "mean")
        s = _convert(stddev, n, "stddev")
        lo = _convert(low, n, "low")
        hi = _convert(high, n, "high")
        _check_finite(m, n, "mean")
        _check_positive(s, n, "stddev")
        self._scalar = all(type(v) is float for v in (m, s, lo, hi))
        if self._scalar:
            if lo != lo:
                raise _err(n, "low", lo, "a number (may be -inf), not NaN")
            if hi != hi:
                raise _err(n, "high", hi, "a number (may be +inf), not NaN")
            if not lo < hi:
                raise ValueError(f"{n}: low must be less than high, got low={lo!r}, "
                                 f"high={hi!r}")
            self._shape = ()
        else:
            self._shape = _batch_shape(n, mean=m, stddev=s, low=lo, high=hi)
            _require(~np.isnan(lo), n, "low", lo, "a number (may be -inf), not NaN")
            _require(~np.isnan(hi), n, "high", hi, "a number (may be +inf), not NaN")
            _check_less(lo, hi, n)
        self._mean = m
        self._stddev = s
        self._low = lo
        self._high = hi
        self._logz = None

    def _standard_bounds(self) -> tuple[Any, Any]:
        with np.errstate(all="ignore"):
            a = (np.asarray(self._low) - self._mean) / self._stddev
            b = (np.asarray(self._high) - self._mean) / self._stddev
        return a, b

    def _log_normaliser(self) -> Any:
        """log(Phi(b) - Phi(a)) of the standardised bounds, cached."""
        if self._logz is None:
            a, b = self._standard_bounds()
            self._logz = _finish(_log_ndtr_diff(a, b))
        return self._logz

    def _lp(self, x: float) -> float:
        if not self._low <= x <= self._high:
            return _NINF
        s = self._stddev
        z = (x - self._mean) / s
        r = -0.5 * z * z - _log(s) - _LOG_SQRT_2PI - self._log_normaliser()
        return r if r == r else _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            z = (x - self._mean) / self._stddev
            out = (-0.5 * z * z - np.log(self._stddev) - _LOG_SQRT_2PI
                   - self._log_normaliser())
            inside = (x >= self._low) & (x <= self._high)
        return np.where(inside & ~np.isnan(out), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            m, s = self._mean, self._stddev
            x = _truncnorm_std_sample_scalar((self._low - m) / s, (self._high - m) / s,
                                             rng.random())
            return min(max(m + s * x, self._low), self._high)
        a, b = self._standard_bounds()
        x = _truncnorm_std_sample(a, b, rng.random(self._shape))
        return np.clip(self._mean + self._stddev * x, self._low, self._high)

    def _std_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the standardised truncated normal.

        The closed form subtracts O(1) terms to get the variance, which loses everything on a
        narrow interval (variance ~ width**2 / 12); there the density is smooth on the scale of
        the interval and Gauss-Legendre quadrature about the midpoint is exact to rounding.
        """
        a, b = self._standard_bounds()
        logz = np.asarray(self._log_normaliser())
        with np.errstate(all="ignore"):
            ra = np.exp(-0.5 * a * a - _LOG_SQRT_2PI - logz)  # phi(a) / Z
            rb = np.exp(-0.5 * b * b - _LOG_SQRT_2PI - logz)
            ara = np.where(np.isfinite(a), a * ra, 0.0)
            brb = np.where(np.isfinite(b), b * rb, 0.0)
            m = ra - rb
            var = np.maximum(1.0 + ara - brb - m * m, 0.0)
            mid = 0.5 * (a + b)
            half = 0.5 * (b - a)
            narrow = np.isfinite(half) & (half * (np.abs(mid) + half) < 0.5)
            if narrow.any():
                nodes, weights = _gauss_legendre()
                t = half[..., None] * nodes
                f = weights * np.exp(-mid[..., None] * t - 0.5 * t * t)
                total = f.sum(axis=-1)
                e1 = (f * t).sum(axis=-1) / total
                e2 = (f * t * t).sum(axis=-1) / total
                m = np.where(narrow, mid + e1, m)
                var = np.where(narrow, np.maximum(e2 - e1 * e1, 0.0), var)
        return m, var

    @property
    def loc(self) -> Any:
        return self._mean

    @property
    def scale(self) -> Any:
        return self._stddev

    @property
    def low(self) -> Any:
        return self._low

    @property
    def high(self) -> Any:
        return self._high

    @property
    def mean(self) -> Any:
        m, _ = self._std_moments()
        return self._bcast(self._mean + self._stddev * m)

    @property
    def stddev(self) -> Any:
        _, var = self._std_moments()
        return self._bcast(self._stddev * np.sqrt(var))

    @property
    def support(self) -> Support:
        if self._scalar:
            return Support("interval", self._low, self._high)
        return Support("interval", self._bcast(self._low), self._bcast(self._high))

    def _param_values(self) -> tuple:
        return (self._mean, self._stddev, self._low, self._high)


# ----------------------------------------------------------------------------------------------
# Discrete distributions


class Categorical(Distribution):
    """Categorical(probs) over the indices 0..K-1 of the last axis of ``probs``.

    ``probs`` need only be non-negative with a positive sum; they are normalised. A 1-D
    ``probs`` gives a scalar distribution (``sample`` returns an int); leading axes batch.
    """

    __slots__ = ("_plist", "_probs", "_cdf", "_scalar", "_shape")
    name = "Categorical"
    discrete = True

    def __init__(self, probs: Any) -> None:
        self._cdf = None
        self._probs = None
        t = type(probs)
        if (t is list or t is tuple) and probs and self._init_list(probs):
            return
        try:
            p = _as_array(probs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Categorical: probs must be an array of numbers, "
                             f"got {probs!r}") from exc
        if p.ndim == 0 or p.shape[-1] == 0:
            raise ValueError(f"Categorical: probs must have at least one dimension with at "
                             f"least one category, got an array of shape {p.shape}")
        with np.errstate(invalid="ignore"):
            _require((p >= 0.0) & (p < _INF), "Categorical", "probs", p,
                     "non-negative and finite")
        total = p.sum(axis=-1, keepdims=True)
        if not ((total > 0.0) & (total < _INF)).all():
            bad = ~((total[..., 0] > 0.0) & (total[..., 0] < _INF))
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"Categorical: probs must have a positive finite sum, got sum "
                             f"{float(total[..., 0][idx])!r} (at batch index {idx})")
        p = p / total
        self._probs = p
        self._scalar = p.ndim == 1
        self._shape = p.shape[:-1]
        self._plist = p.tolist() if self._scalar else None

    def _init_list(self, probs: Sequence[Any]) -> bool:
        """Fast path for a flat list of Python numbers; False to fall back to numpy."""
        total = 0.0
        for q in probs:
            tq = type(q)
            if tq is not float and tq is not int:
                return False
            if not 0.0 <= q < _INF:
                raise _err("Categorical", "probs", float(q), "non-negative and finite")
            total += q
        if not 0.0 < total < _INF:
            raise ValueError(f"Categorical: probs must have a positive finite sum, got sum "
                             f"{total!r}")
        self._plist = [q / total for q in probs]
        self._scalar = True
        self._shape = ()
        return True

    @property
    def probs(self) -> np.ndarray:
        if self._probs is None:
            self._probs = np.array(self._plist, dtype=np.float64)
        return self._probs

    @property
    def num_categories(self) -> int:
        return len(self._plist) if self._scalar else self.probs.shape[-1]

    @property
    def address_suffix(self) -> str:  # type: ignore[override]
        # As pyprob writes it: categoricals of different sizes at one call site stay apart.
        return f"Categorical(len_probs:{self.num_categories})"

    def _lp(self, x: float) -> float:
        p = self._plist
        if type(x) is not int:
            if not x.is_integer():
                return _NINF
            x = int(x)
        if 0 <= x < len(p):
            q = p[x]
            return _log(q) if q > 0.0 else _NINF
        return _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        probs = self.probs
        k = probs.shape[-1]
        full = np.broadcast_shapes(x.shape, self._shape)
        xb = np.broadcast_to(x, full)
        with np.errstate(invalid="ignore", divide="ignore"):
            valid = _integer_mask(xb) & (xb >= 0) & (xb < k)
            logp = np.log(np.broadcast_to(probs, full + (k,)))
        idx = np.where(valid, xb, 0).astype(np.int64)
        out = np.take_along_axis(logp, idx[..., None], axis=-1)[..., 0]
        return np.where(valid, out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            cdf = self._cdf
            if cdf is None:
                cdf = self._cdf = list(itertools.accumulate(self._plist))
            i = bisect.bisect_right(cdf, rng.random() * cdf[-1])
            # Rounding can put u * total on the last edge; fall back to the last category
            # that has mass.
            if i >= len(cdf):
                i = len(cdf) - 1
                while self._plist[i] <= 0.0:
                    i -= 1
            return i
        probs = self.probs
        cdf = np.cumsum(probs, axis=-1)
        u = rng.random(self._shape)[..., None] * cdf[..., -1:]
        idx = (cdf <= u).sum(axis=-1)
        return np.minimum(idx, probs.shape[-1] - 1).astype(np.int64)

    def _index_moments(self) -> tuple[Any, Any]:
        p = self.probs
        k = np.arange(p.shape[-1], dtype=np.float64)
        m = p @ k
        var = np.maximum(p @ (k * k) - m * m, 0.0)
        return m, var

    @property
    def mean(self) -> Any:
        return self._bcast(self._index_moments()[0])

    @property
    def stddev(self) -> Any:
        return self._bcast(np.sqrt(self._index_moments()[1]))

    @property
    def support(self) -> Support:
        return Support("integer_interval", 0, self.num_categories - 1)

    def _param_values(self) -> tuple:
        return (self.probs,)


class Poisson(Distribution):
    """Poisson(rate) on the non-negative integers (rate 0 puts all mass on 0)."""

    __slots__ = ("_rate", "_scalar", "_shape")
    name = "Poisson"
    discrete = True

    def __init__(self, rate: Any) -> None:
        r = rate if type(rate) is float else _convert(rate, "Poisson", "rate")
        _check_nonnegative(r, "Poisson", "rate")
        self._scalar = type(r) is float
        self._shape = () if self._scalar else tuple(np.shape(r))
        self._rate = r

    def _lp(self, x: float) -> float:
        if type(x) is not int and not x.is_integer():
            return _NINF
        if x < 0:
            return _NINF
        r = self._rate
        if r == 0.0:
            return 0.0 if x == 0 else _NINF
        return x * _log(r) - r - _lgamma(x + 1.0)

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        sp = _special()
        with np.errstate(all="ignore"):
            out = sp.xlogy(x, self._rate) - self._rate - sp.gammaln(x + 1.0)
            return np.where(_integer_mask(x) & (x >= 0), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return int(rng.poisson(self._rate))
        return rng.poisson(self._rate, size=self._shape).astype(np.int64)

    @property
    def rate(self) -> Any:
        return self._rate

    @property
    def mean(self) -> Any:
        return self._bcast(self._rate)

    @property
    def stddev(self) -> Any:
        return self._bcast(np.sqrt(self._rate))

    @property
    def support(self) -> Support:
        return _NONNEG_INT

    def _param_values(self) -> tuple:
        return (self._rate,)


class Bernoulli(Distribution):
    """Bernoulli(probs) on {0, 1}; ``sample`` returns the int 0 or 1."""

    __slots__ = ("_p", "_scalar", "_shape")
    name = "Bernoulli"
    discrete = True

    def __init__(self, probs: Any) -> None:
        p = probs if type(probs) is float else _convert(probs, "Bernoulli", "probs")
        _check_probability(p, "Bernoulli", "probs")
        self._scalar = type(p) is float
        self._shape = () if self._scalar else tuple(np.shape(p))
        self._p = p

    def _lp(self, x: float) -> float:
        p = self._p
        if x == 1:
            return _log(p) if p > 0.0 else _NINF
        if x == 0:
            return _log1p(-p) if p < 1.0 else _NINF
        return _NINF

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            p = np.asarray(self._p)
            out = np.where(x == 1, np.log(p), np.log1p(-p))
        return np.where((x == 0) | (x == 1), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return 1 if rng.random() < self._p else 0
        return (rng.random(self._shape) < self._p).astype(np.int64)

    @property
    def probs(self) -> Any:
        return self._p

    @property
    def mean(self) -> Any:
        return self._bcast(self._p)

    @property
    def stddev(self) -> Any:
        p = np.asarray(self._p)
        return self._bcast(np.sqrt(p * (1.0 - p)))

    @property
    def support(self) -> Support:
        return _BOOLEAN

    def _param_values(self) -> tuple:
        return (self._p,)


class Binomial(Distribution):
    """Binomial(total_count, probs) on {0, ..., total_count}."""

    __slots__ = ("_n", "_p", "_scalar", "_shape")
    name = "Binomial"
    discrete = True

    def __init__(self, total_count: Any, probs: Any) -> None:
        n = _convert(total_count, "Binomial", "total_count")
        p = _convert(probs, "Binomial", "probs")
        if type(n) is float:
            if not (n >= 0.0 and n.is_integer()):
                raise _err("Binomial", "total_count", n, "a non-negative integer")
        else:
            _require(_integer_mask(n) & (n >= 0.0), "Binomial", "total_count", n,
                     "a non-negative integer")
        _check_probability(p, "Binomial", "probs")
        self._scalar = type(n) is float and type(p) is float
        self._shape = () if self._scalar else _batch_shape("Binomial", total_count=n, probs=p)
        self._n = n
        self._p = p

    def _lp(self, x: float) -> float:
        if type(x) is not int and not x.is_integer():
            return _NINF
        n, p = self._n, self._p
        if not 0 <= x <= n:
            return _NINF
        return (_lgamma(n + 1.0) - _lgamma(x + 1.0) - _lgamma(n - x + 1.0)
                + _xlogy_s(float(x), p) + _xlog1py_s(n - x, -p))

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        sp = _special()
        n, p = self._n, self._p
        with np.errstate(all="ignore"):
            out = (sp.gammaln(n + 1.0) - sp.gammaln(x + 1.0) - sp.gammaln(n - x + 1.0)
                   + sp.xlogy(x, p) + sp.xlog1py(n - x, -np.asarray(p)))
            return np.where(_integer_mask(x) & (x >= 0) & (x <= n), out, _NINF)

    def sample(self, rng: np.random.Generator) -> Any:
        if self._scalar:
            return int(rng.binomial(int(self._n), self._p))
        n = np.asarray(self._n).astype(np.int64)
        return rng.binomial(n, self._p, size=self._shape).astype(np.int64)

    @property
    def total_count(self) -> Any:
        return self._n

    @property
    def probs(self) -> Any:
        return self._p

    @property
    def mean(self) -> Any:
        return self._bcast(self._n * np.asarray(self._p))

    @property
    def stddev(self) -> Any:
        p = np.asarray(self._p)
        return self._bcast(np.sqrt(self._n * p * (1.0 - p)))

    @property
    def support(self) -> Support:
        if self._scalar:
            return Support("integer_interval", 0, int(self._n))
        return Support("integer_interval", 0, self._bcast(self._n))

    def _param_values(self) -> tuple:
        return (self._n, self._p)


# ----------------------------------------------------------------------------------------------
# Mixture


class Mixture(Distribution):
    """Mixture(distributions, probs): pick component i with probability probs[i], draw from it.

    Components must be scalar distributions with the same kind of support (all real, all
    non-negative integers, ...). ``probs`` is normalised; None means equal weights. There is
    no PPX table for a mixture, so :meth:`params` raises NotImplementedError.
    """

    __slots__ = ("_components", "_plist", "_logw", "_cdf", "_support")
    name = "Mixture"
    _scalar = True
    _shape = ()

    def __init__(self, distributions: Sequence[Distribution], probs: Any = None) -> None:
        comps = list(distributions)
        if not comps:
            raise ValueError("Mixture: distributions must be a non-empty list of "
                             "distributions, got an empty list")
        for i, c in enumerate(comps):
            if not isinstance(c, Distribution):
                raise ValueError(f"Mixture: distributions must hold Distribution objects, "
                                 f"got {c!r} at position {i}")
            if c.batch_shape != ():
                raise ValueError(f"Mixture: distributions must be scalar (batch shape ()), "
                                 f"got {c!r} with batch shape {c.batch_shape} at position {i}")
        supports = [c.support for c in comps]
        kinds = {s.kind for s in supports}
        if len(kinds) != 1:
            raise ValueError(f"Mixture: distributions must share one kind of support, got "
                             f"{sorted(kinds)}")
        if probs is None:
            w = [1.0 / len(comps)] * len(comps)
        else:
            try:
                w = [float(q) for q in np.ravel(_as_array(probs))]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Mixture: probs must be a list of numbers, "
                                 f"got {probs!r}") from exc
            if len(w) != len(comps):
                raise ValueError(f"Mixture: probs must have one entry per component "
                                 f"({len(comps)}), got {len(w)}: {w!r}")
            for q in w:
                if not 0.0 <= q < _INF:
                    raise _err("Mixture", "probs", q, "non-negative and finite")
            total = sum(w)
            if not 0.0 < total < _INF:
                raise ValueError(f"Mixture: probs must have a positive finite sum, got sum "
                                 f"{total!r}")
            w = [q / total for q in w]
        self._components = tuple(comps)
        self._plist = w
        self._logw = [_log(q) if q > 0.0 else _NINF for q in w]
        self._cdf = list(itertools.accumulate(w))
        kind = kinds.pop()
        lows = [s.low for s in supports]
        highs = [s.high for s in supports]
        low = None if any(v is None for v in lows) else min(lows)
        high = None if any(v is None for v in highs) else max(highs)
        self._support = Support(kind, low, high)

    @property
    def discrete(self) -> bool:  # type: ignore[override]
        return self._components[0].discrete

    @property
    def distributions(self) -> tuple[Distribution, ...]:
        return self._components

    @property
    def address_suffix(self) -> str:  # type: ignore[override]
        return f"Mixture({', '.join(c.address_suffix for c in self._components)})"

    @property
    def probs(self) -> np.ndarray:
        return np.array(self._plist, dtype=np.float64)

    def _lp(self, x: float) -> float:
        return _logsumexp_list([lw + c.log_prob(x)
                                for lw, c in zip(self._logw, self._components)])

    def _lp_batch(self, x: np.ndarray) -> np.ndarray:
        terms = np.stack([lw + np.asarray(c.log_prob(x), dtype=np.float64)
                          for lw, c in zip(self._logw, self._components)])
        m = terms.max(axis=0)
        safe = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = safe + np.log(np.exp(terms - safe).sum(axis=0))
        return np.where(np.isfinite(m), out, m)

    def sample(self, rng: np.random.Generator) -> Any:
        cdf = self._cdf
        i = bisect.bisect_right(cdf, rng.random() * cdf[-1])
        if i >= len(cdf):
            i = len(cdf) - 1
            while self._plist[i] <= 0.0:
                i -= 1
        return self._components[i].sample(rng)

    @property
    def mean(self) -> float:
        return float(math.fsum(w * c.mean for w, c in zip(self._plist, self._components)))

    @property
    def stddev(self) -> float:
        m = self.mean
        second = math.fsum(w * (c.stddev ** 2 + c.mean ** 2)
                           for w, c in zip(self._plist, self._components))
        return _sqrt(max(second - m * m, 0.0))

    @property
    def support(self) -> Support:
        return self._support

    def params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError("Mixture has no flat parameters (no PPX table); encode its "
                                  "components and probs separately")

    @classmethod
    def from_params(cls, **params: Any) -> "Mixture":
        raise NotImplementedError("Mixture has no flat parameters (no PPX table); construct "
                                  "it as Mixture(distributions, probs)")

    def _param_values(self) -> tuple:
        return (list(self._components), self._plist)

    def __repr__(self) -> str:
        comps = ", ".join(repr(c) for c in self._components)
        probs = ", ".join(f"{q:.6g}" for q in self._plist)
        return f"Mixture([{comps}], probs=[{probs}])"


BY_NAME: dict[str, type] = {t.name: globals()[t.name] for t in TYPES}

PPX_TYPES: dict[int, type] = {t.ppx: BY_NAME[t.name] for t in TYPES if t.ppx}
