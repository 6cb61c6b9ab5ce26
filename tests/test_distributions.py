"""Tests of etalumis_core.distributions against scipy.stats and by simulation."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from etalumis_core import distributions as D

N_SAMPLES = 20000
Z_TOL = 5.0  # standard errors allowed in statistical checks


def _truncnorm(mean, stddev, low, high):
    return stats.truncnorm((low - mean) / stddev, (high - mean) / stddev, loc=mean, scale=stddev)


def _categorical(probs):
    p = np.asarray(probs, dtype=float)
    return stats.rv_discrete(values=(np.arange(len(p)), p / p.sum()))


# name -> (class, params A, params B, scipy frozen from params, points in support, points outside)
CASES = {
    "Normal": (D.Normal, dict(mean=1.0, stddev=2.0), dict(mean=-3.0, stddev=0.5),
               lambda mean, stddev: stats.norm(mean, stddev),
               [-3.0, 0.0, 1.0, 2.5, 10.0], []),
    "Uniform": (D.Uniform, dict(low=-1.0, high=3.0), dict(low=2.0, high=2.5),
                lambda low, high: stats.uniform(low, high - low),
                [-1.0, 0.0, 2.2, 2.4], [-1.01, 3.5]),
    "Categorical": (D.Categorical, dict(probs=[0.2, 0.5, 0.3]), dict(probs=[0.6, 0.0, 0.4]),
                    lambda probs: _categorical(probs), [0, 1, 2], [-1, 3, 0.5]),
    "Poisson": (D.Poisson, dict(rate=3.5), dict(rate=0.2),
                lambda rate: stats.poisson(rate), [0, 1, 3, 10], [-1, 2.5]),
    "Bernoulli": (D.Bernoulli, dict(probs=0.3), dict(probs=0.9),
                  lambda probs: stats.bernoulli(probs), [0, 1], [-1, 0.5, 2]),
    "Beta": (D.Beta, dict(concentration1=2.0, concentration0=3.5),
             dict(concentration1=0.7, concentration0=1.3),
             lambda concentration1, concentration0: stats.beta(concentration1, concentration0),
             [0.01, 0.3, 0.9, 0.999], [-0.1, 1.1]),
    "Exponential": (D.Exponential, dict(rate=1.5), dict(rate=0.1),
                    lambda rate: stats.expon(scale=1.0 / rate), [0.0, 0.1, 3.0, 40.0], [-0.1]),
    "Gamma": (D.Gamma, dict(concentration=2.5, rate=1.5), dict(concentration=0.6, rate=4.0),
              lambda concentration, rate: stats.gamma(concentration, scale=1.0 / rate),
              [0.1, 1.0, 5.0, 0.003], [-1.0]),
    "LogNormal": (D.LogNormal, dict(loc=0.3, scale=0.7), dict(loc=-1.0, scale=0.2),
                  lambda loc, scale: stats.lognorm(scale, scale=math.exp(loc)),
                  [0.1, 1.0, 5.0, 0.37], [-1.0, 0.0]),
    "Binomial": (D.Binomial, dict(total_count=10.0, probs=0.3), dict(total_count=4.0, probs=0.8),
                 lambda total_count, probs: stats.binom(int(total_count), probs),
                 [0, 3, 4, 2], [-1, 11, 2.5]),
    "Weibull": (D.Weibull, dict(scale=2.0, concentration=1.5), dict(scale=0.5, concentration=4.0),
                lambda scale, concentration: stats.weibull_min(concentration, scale=scale),
                [0.1, 1.0, 5.0, 0.3], [-1.0]),
    "TruncatedNormal": (D.TruncatedNormal, dict(mean=0.5, stddev=2.0, low=-1.0, high=3.0),
                        dict(mean=0.0, stddev=1.0, low=1.5, high=math.inf),
                        _truncnorm, [-1.0, 0.0, 2.9, 1.7], [-1.5, -3.0]),
}
NAMES = list(CASES)


def _scipy_logp(frozen, x):
    return frozen.logpmf(x) if hasattr(frozen, "logpmf") else frozen.logpdf(x)


def _batched(cls, pa, pb):
    """Batched parameters of shape (2,) (Categorical: probs (2, K)) holding A and B."""
    return {k: np.array([pa[k], pb[k]], dtype=float) for k in pa}


def _mixture():
    comps = [D.Normal(-1.0, 0.5), D.Normal(2.0, 1.0), D.Normal(0.0, 3.0)]
    return D.Mixture(comps, [3.0, 5.0, 2.0])


def _mixture_logpdf(x):
    w = np.array([0.3, 0.5, 0.2])
    dens = (w[0] * stats.norm(-1.0, 0.5).pdf(x) + w[1] * stats.norm(2.0, 1.0).pdf(x)
            + w[2] * stats.norm(0.0, 3.0).pdf(x))
    return np.log(dens)


# ---------------------------------------------------------------------------------------------
# log_prob against scipy


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_scalar_matches_scipy(name):
    cls, pa, pb, ref, points, _ = CASES[name]
    for params in (pa, pb):
        d = cls(**params)
        frozen = ref(**params)
        for x in points:
            lp = d.log_prob(x)
            assert isinstance(lp, float)
            expected = _scipy_logp(frozen, x)
            if np.isneginf(expected):
                assert lp == -math.inf
            else:
                assert lp == pytest.approx(expected, rel=1e-9, abs=1e-12), (params, x)
        # An array of values under a scalar distribution scores elementwise.
        lps = d.log_prob(np.array(points, dtype=float))
        assert lps.shape == (len(points),)
        np.testing.assert_allclose(lps, _scipy_logp(frozen, np.array(points, dtype=float)),
                                   rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_batched_matches_scipy(name):
    cls, pa, pb, ref, points, _ = CASES[name]
    d = cls(**_batched(cls, pa, pb))
    assert d.batch_shape == (2,)
    fa, fb = ref(**pa), ref(**pb)
    for x in points:
        lp = d.log_prob(x)
        assert isinstance(lp, np.ndarray) and lp.shape == (2,)
        expected = np.array([_scipy_logp(fa, x), _scipy_logp(fb, x)])
        np.testing.assert_allclose(lp, expected, rtol=1e-9, atol=1e-12)
    # One value per batch element.
    x = np.array(points[:2], dtype=float)
    np.testing.assert_allclose(d.log_prob(x), [_scipy_logp(fa, x[0]), _scipy_logp(fb, x[1])],
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_outside_support_is_neg_inf(name):
    cls, pa, pb, _, _, outside = CASES[name]
    d = cls(**pa)
    for x in list(outside) + [math.nan]:
        assert d.log_prob(x) == -math.inf, x
    db = cls(**_batched(cls, pa, pb))
    for x in outside:
        assert np.all(db.log_prob(x) == -math.inf), x
    assert np.all(db.log_prob(math.nan) == -math.inf)


def test_log_prob_at_support_edges_never_nan():
    assert D.Gamma(1.0, 2.0).log_prob(0.0) == pytest.approx(math.log(2.0))
    assert D.Gamma(3.0, 2.0).log_prob(0.0) == -math.inf
    assert D.Beta(1.0, 2.0).log_prob(0.0) == pytest.approx(math.log(2.0))
    assert D.Beta(2.0, 1.0).log_prob(0.0) == -math.inf
    assert D.Weibull(2.0, 1.0).log_prob(0.0) == pytest.approx(math.log(0.5))
    assert D.Weibull(1.0, 2.0).log_prob(1e300) == -math.inf
    assert D.Bernoulli(0.0).log_prob(1) == -math.inf
    assert D.Bernoulli(1.0).log_prob(1) == 0.0
    assert D.Binomial(5, 1.0).log_prob(5) == 0.0
    assert D.Binomial(5, 0.0).log_prob(1) == -math.inf
    assert D.Poisson(0.0).log_prob(0) == 0.0
    assert D.Poisson(0.0).log_prob(1) == -math.inf
    assert D.Categorical([0.5, 0.0, 0.5]).log_prob(1) == -math.inf
    for d in (D.Normal(0.0, 1.0), D.Exponential(1.0), D.Gamma(2.0, 1.0), D.LogNormal(0.0, 1.0)):
        assert d.log_prob(math.inf) == -math.inf
        assert d.log_prob(-math.inf) == -math.inf


def test_categorical_log_prob_takes_integer_valued_floats_and_numpy_ints():
    d = D.Categorical([0.1, 0.2, 0.7])
    assert d.log_prob(2) == pytest.approx(math.log(0.7))
    assert d.log_prob(2.0) == pytest.approx(math.log(0.7))
    assert d.log_prob(np.int64(1)) == pytest.approx(math.log(0.2))


# ---------------------------------------------------------------------------------------------
# Moments and sampling


@pytest.mark.parametrize("name", NAMES)
def test_mean_and_stddev_match_scipy(name):
    cls, pa, pb, ref, _, _ = CASES[name]
    for params in (pa, pb):
        d = cls(**params)
        frozen = ref(**params)
        assert d.mean == pytest.approx(frozen.mean(), rel=1e-9, abs=1e-12)
        assert d.stddev == pytest.approx(frozen.std(), rel=1e-9, abs=1e-12)
    db = cls(**_batched(cls, pa, pb))
    np.testing.assert_allclose(db.mean, [ref(**pa).mean(), ref(**pb).mean()], rtol=1e-9)
    np.testing.assert_allclose(db.stddev, [ref(**pa).std(), ref(**pb).std()], rtol=1e-9)


def _check_moments(samples, mean, stddev):
    """Sample mean and variance within Z_TOL standard errors of the stated moments."""
    x = np.asarray(samples, dtype=float)
    n = len(x)
    assert abs(x.mean() - mean) < Z_TOL * stddev / math.sqrt(n), (x.mean(), mean)
    dev = x - x.mean()
    var_hat = dev.var()
    se_var = math.sqrt(max(np.mean(dev ** 4) - var_hat ** 2, 0.0) / n)
    assert abs(var_hat - stddev ** 2) < Z_TOL * se_var + 1e-12, (var_hat, stddev ** 2)


@pytest.mark.parametrize("name", NAMES + ["Mixture"])
def test_scalar_samples_match_moments_and_support(name):
    d = _mixture() if name == "Mixture" else CASES[name][0](**CASES[name][1])
    rng = np.random.default_rng(1234)
    samples = [d.sample(rng) for _ in range(N_SAMPLES)]
    expected_type = int if d.discrete else float
    assert all(type(s) is expected_type for s in samples[:100])
    assert np.all(d.support.contains(np.array(samples, dtype=float)))
    _check_moments(samples, d.mean, d.stddev)


@pytest.mark.parametrize("name", NAMES)
def test_batched_samples_match_moments_and_support(name):
    cls, pa, pb, _, _, _ = CASES[name]
    for params in (pa, pb):
        tiled = {k: np.tile(np.asarray(v, dtype=float), (N_SAMPLES, 1)).squeeze(-1)
                 if np.ndim(v) == 0 else np.tile(np.asarray(v, dtype=float), (N_SAMPLES, 1))
                 for k, v in params.items()}
        d = cls(**tiled)
        assert d.batch_shape == (N_SAMPLES,)
        x = d.sample(np.random.default_rng(99))
        assert isinstance(x, np.ndarray) and x.shape == (N_SAMPLES,)
        if d.discrete:
            assert x.dtype == np.int64
        single = cls(**params)
        assert np.all(single.support.contains(x.astype(float)))
        _check_moments(x, single.mean, single.stddev)


def test_batched_sample_shape_is_broadcast_of_params():
    rng = np.random.default_rng(0)
    d = D.Normal(np.zeros((3, 1)), np.ones(4))
    assert d.batch_shape == (3, 4)
    assert d.sample(rng).shape == (3, 4)
    assert d.log_prob(0.0).shape == (3, 4)
    assert d.mean.shape == (3, 4) and d.stddev.shape == (3, 4)
    c = D.Categorical(np.ones((5, 3)))
    assert c.batch_shape == (5,)
    assert c.sample(rng).shape == (5,)


def test_sampling_is_reproducible_with_a_seed():
    d = D.Gamma(2.0, 3.0)
    a = [d.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ---------------------------------------------------------------------------------------------
# Truncated normal in the tails


@pytest.mark.parametrize("low,high", [(8.0, 9.0), (40.0, 41.0), (-41.0, -40.0), (-1e-9, 1e-9),
                                      (-math.inf, -30.0), (2.0, 2.0 + 1e-6)])
def test_truncated_normal_far_tails(low, high):
    d = D.TruncatedNormal(0.0, 1.0, low, high)
    rng = np.random.default_rng(5)
    xs = np.array([d.sample(rng) for _ in range(2000)])
    assert np.all((xs >= low) & (xs <= high))
    xb = D.TruncatedNormal(np.zeros(2000), 1.0, low, high).sample(rng)
    assert np.all((xb >= low) & (xb <= high))
    assert np.all(np.isfinite(d.log_prob(xs)))
    # The sample mean from both paths agrees with the exact truncated mean.
    se = d.stddev / math.sqrt(2000)
    assert se > 0.0
    assert abs(xs.mean() - d.mean) < Z_TOL * se
    assert abs(xb.mean() - d.mean) < Z_TOL * se
    _check_moments(xs, d.mean, d.stddev)
    width = high - low
    if width < 1e-3:  # the density is flat on such an interval: moments of a uniform
        assert d.stddev == pytest.approx(width / math.sqrt(12.0), rel=1e-6)
        assert d.mean == pytest.approx(0.5 * (low + high), abs=width * 1e-3)
    if np.isfinite(low) and np.isfinite(high):
        ref = stats.truncnorm(low, high)
        if width > 1e-3:  # scipy's own moments lose precision on narrower intervals
            assert d.mean == pytest.approx(ref.mean(), rel=1e-9)
            assert d.stddev == pytest.approx(ref.std(), rel=1e-6)
        total = integrate.quad(lambda x: math.exp(d.log_prob(x)), low, high, epsabs=0,
                               epsrel=1e-10)[0]
        assert total == pytest.approx(1.0, rel=1e-6)


def test_truncated_normal_integrates_to_one():
    d = D.TruncatedNormal(0.5, 2.0, -1.0, 3.0)
    total, _ = integrate.quad(lambda x: math.exp(d.log_prob(x)), -1.0, 3.0)
    assert total == pytest.approx(1.0, rel=1e-9)
    one_sided = D.TruncatedNormal(1.0, 0.5, 0.0, math.inf)
    total, _ = integrate.quad(lambda x: math.exp(one_sided.log_prob(x)), 0.0, math.inf)
    assert total == pytest.approx(1.0, rel=1e-8)
    assert d.support.kind == "interval" and (d.support.low, d.support.high) == (-1.0, 3.0)
    # The parameters stay reachable under their own names.
    assert (d.loc, d.scale) == (0.5, 2.0)
    assert d.params()["mean"] == 0.5


# ---------------------------------------------------------------------------------------------
# Mixture


def test_mixture_log_prob_matches_density_and_integrates_to_one():
    d = _mixture()
    xs = np.array([-2.0, -1.0, 0.0, 0.7, 2.0, 6.0])
    np.testing.assert_allclose([d.log_prob(float(x)) for x in xs], _mixture_logpdf(xs),
                               rtol=1e-10)
    np.testing.assert_allclose(d.log_prob(xs), _mixture_logpdf(xs), rtol=1e-10)
    total, _ = integrate.quad(lambda x: math.exp(d.log_prob(x)), -math.inf, math.inf,
                              points=None, limit=200)
    assert total == pytest.approx(1.0, rel=1e-8)
    assert d.log_prob(1e6) == -math.inf or d.log_prob(1e6) < -1e10
    assert d.support == D.Support("real")
    assert d.ppx_type == 0 and d.name == "Mixture" and not d.discrete


def test_mixture_of_discrete_components_sums_to_one():
    d = D.Mixture([D.Poisson(1.0), D.Poisson(6.0)], [0.25, 0.75])
    assert d.discrete
    assert d.support.kind == "nonnegative_integer"
    total = sum(math.exp(d.log_prob(k)) for k in range(200))
    assert total == pytest.approx(1.0, rel=1e-12)
    assert d.log_prob(-1) == -math.inf
    assert d.log_prob(1.5) == -math.inf
    assert d.mean == pytest.approx(0.25 * 1.0 + 0.75 * 6.0)


def test_mixture_has_no_flat_params():
    with pytest.raises(NotImplementedError, match="Mixture"):
        _mixture().params()
    with pytest.raises(NotImplementedError, match="Mixture"):
        D.Mixture.from_params(probs=[1.0])


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("make,pattern", [
    (lambda: D.Normal(0.0, -1.0), r"Normal: stddev must be positive and finite, got -1\.0"),
    (lambda: D.Normal(math.nan, 1.0), r"Normal: mean must be finite, got nan"),
    (lambda: D.Normal(0.0, math.inf), r"Normal: stddev must be positive and finite, got inf"),
    (lambda: D.Normal(np.zeros(3), np.array([1.0, 0.0, 2.0])),
     r"Normal: stddev must be positive and finite, got 0\.0 \(at index \(1,\)"),
    (lambda: D.Normal(np.zeros(2), np.ones(3)), r"Normal: parameter shapes must broadcast"),
    (lambda: D.Uniform(2.0, 1.0), r"Uniform: low must be less than high, got low=2\.0, high=1\.0"),
    (lambda: D.Uniform(0.0, math.inf), r"Uniform: high must be finite, got inf"),
    (lambda: D.Categorical([0.5, -0.1]),
     r"Categorical: probs must be non-negative and finite, got -0\.1"),
    (lambda: D.Categorical(np.array([[0.5, 0.5], [0.0, 0.0]])),
     r"Categorical: probs must have a positive finite sum, got sum 0\.0"),
    (lambda: D.Categorical([0.0, 0.0]), r"Categorical: probs must have a positive finite sum"),
    (lambda: D.Categorical([]), r"Categorical: probs must have at least one"),
    (lambda: D.Poisson(-1.0), r"Poisson: rate must be non-negative and finite, got -1\.0"),
    (lambda: D.Bernoulli(1.5), r"Bernoulli: probs must be a probability in \[0, 1\], got 1\.5"),
    (lambda: D.Beta(0.0, 1.0), r"Beta: concentration1 must be positive and finite, got 0\.0"),
    (lambda: D.Beta(1.0, math.nan), r"Beta: concentration0 must be positive and finite, got nan"),
    (lambda: D.Exponential(np.array([1.0, -2.0])),
     r"Exponential: rate must be positive and finite, got -2\.0"),
    (lambda: D.Gamma(1.0, math.inf), r"Gamma: rate must be positive and finite, got inf"),
    (lambda: D.LogNormal(0.0, 0.0), r"LogNormal: scale must be positive and finite, got 0\.0"),
    (lambda: D.Binomial(2.5, 0.5), r"Binomial: total_count must be a non-negative integer, "
                                   r"got 2\.5"),
    (lambda: D.Binomial(-1, 0.5), r"Binomial: total_count must be a non-negative integer, "
                                  r"got -1\.0"),
    (lambda: D.Binomial(3, -0.5), r"Binomial: probs must be a probability in \[0, 1\], got -0\.5"),
    (lambda: D.Weibull(1.0, -2.0), r"Weibull: concentration must be positive and finite, got -2"),
    (lambda: D.TruncatedNormal(0.0, 1.0, 1.0, 1.0),
     r"TruncatedNormal: low must be less than high, got low=1\.0, high=1\.0"),
    (lambda: D.TruncatedNormal(0.0, 1.0, math.nan, 1.0), r"TruncatedNormal: low must be .*nan"),
    (lambda: D.TruncatedNormal(0.0, -1.0, 0.0, 1.0),
     r"TruncatedNormal: stddev must be positive and finite, got -1\.0"),
    (lambda: D.Mixture([D.Normal(0.0, 1.0)], [0.5, 0.5]),
     r"Mixture: probs must have one entry per component \(1\), got 2"),
    (lambda: D.Mixture([D.Normal(0.0, 1.0), D.Poisson(1.0)]),
     r"Mixture: distributions must share one kind of support"),
    (lambda: D.Mixture([D.Normal(np.zeros(2), 1.0)]), r"Mixture: distributions must be scalar"),
    (lambda: D.Mixture([]), r"Mixture: distributions must be a non-empty list"),
    (lambda: D.Normal("a", 1.0), r"Normal: mean must be a number"),
])
def test_validation_errors_name_distribution_parameter_and_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# ---------------------------------------------------------------------------------------------
# Parameters, PPX ids, conversion


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name):
    cls, pa, pb, _, points, _ = CASES[name]
    for d in (cls(**pa), cls(**_batched(cls, pa, pb))):
        params = d.params()
        assert list(params) == list(cls.param_names)
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in params.values())
        d2 = type(d).from_params(**params)
        assert d2.batch_shape == d.batch_shape
        for k in params:
            np.testing.assert_array_equal(d2.params()[k], params[k])
        for x in points:
            np.testing.assert_array_equal(d2.log_prob(x), d.log_prob(x))
        # In-memory pickling (dask ships distributions between processes) keeps them intact.
        d3 = pickle.loads(pickle.dumps(d))
        np.testing.assert_array_equal(d3.log_prob(points[0]), d.log_prob(points[0]))
        assert repr(d).startswith(f"{name}(") and cls.param_names[0] in repr(d)


def test_ppx_ids_names_and_registries():
    expected = {1: "Normal", 2: "Uniform", 3: "Categorical", 4: "Poisson", 5: "Bernoulli",
                6: "Beta", 7: "Exponential", 8: "Gamma", 9: "LogNormal", 10: "Binomial",
                11: "Weibull"}
    assert {k: v.name for k, v in D.PPX_TYPES.items()} == expected
    assert all(cls.ppx_type == k for k, cls in D.PPX_TYPES.items())
    assert set(D.BY_NAME) == set(expected.values()) | {"TruncatedNormal", "Mixture"}
    assert all(cls.name == cls.__name__ for cls in D.BY_NAME.values())
    assert D.TruncatedNormal.ppx_type == 0 and D.Mixture.ppx_type == 0
    discrete = {"Categorical", "Poisson", "Bernoulli", "Binomial"}
    for name in NAMES:
        assert D.BY_NAME[name].discrete == (name in discrete)


def test_supports():
    assert D.Normal(0.0, 1.0).support == D.Support("real")
    assert D.Uniform(1.0, 2.0).support == D.Support("interval", 1.0, 2.0)
    assert D.Categorical([0.2, 0.3, 0.5]).support == D.Support("integer_interval", 0, 2)
    assert D.Binomial(7, 0.5).support == D.Support("integer_interval", 0, 7)
    assert D.Poisson(1.0).support.kind == "nonnegative_integer"
    assert D.Bernoulli(0.5).support.kind == "boolean"
    assert D.Beta(1.0, 1.0).support.kind == "unit_interval"
    for d in (D.Exponential(1.0), D.Gamma(1.0, 1.0), D.LogNormal(0.0, 1.0), D.Weibull(1.0, 1.0)):
        assert d.support.kind == "positive" and d.support.low == 0.0
    assert D.TruncatedNormal(0.0, 1.0, -2.0, 1.0).support == D.Support("interval", -2.0, 1.0)
    assert D.Mixture([D.Uniform(0.0, 1.0), D.Uniform(2.0, 3.0)]).support == \
        D.Support("interval", 0.0, 3.0)
    with pytest.raises(ValueError, match="Support: kind"):
        D.Support("complex")


def test_categorical_normalises_probs():
    for probs in ([2, 6, 2], np.array([2.0, 6.0, 2.0]), (1.0, 3.0, 1.0)):
        d = D.Categorical(probs)
        np.testing.assert_allclose(d.probs, np.asarray(probs, dtype=float) / np.sum(probs))
        assert math.isclose(math.fsum(math.exp(d.log_prob(k)) for k in range(3)), 1.0)
    d = D.Categorical([2, 6, 2])
    assert d.log_prob(1) == pytest.approx(math.log(0.6))
    np.testing.assert_allclose(d.params()["probs"], [0.2, 0.6, 0.2])
    batched = D.Categorical(np.array([[1.0, 1.0], [1.0, 3.0]]))
    np.testing.assert_allclose(batched.probs, [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(batched.log_prob(1), np.log([0.5, 0.75]))
    assert batched.mean.tolist() == pytest.approx([0.5, 0.75])


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    d = D.Normal(torch.tensor(1.0), torch.tensor(2.0))
    assert d.batch_shape == ()
    lp = d.log_prob(torch.tensor(0.5))
    assert isinstance(lp, float)
    assert lp == pytest.approx(stats.norm(1.0, 2.0).logpdf(0.5))
    assert isinstance(d.sample(np.random.default_rng(0)), float)

    db = D.Normal(torch.zeros(3, dtype=torch.float32), torch.ones(3, requires_grad=True))
    assert db.batch_shape == (3,)
    out = db.log_prob(torch.tensor([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(out, stats.norm().logpdf([0.0, 1.0, 2.0]))

    c = D.Categorical(torch.tensor([1.0, 3.0]))
    assert c.log_prob(torch.tensor(1)) == pytest.approx(math.log(0.75))
    assert isinstance(c.sample(np.random.default_rng(0)), int)
    b = D.Binomial(torch.tensor(5), torch.tensor(0.5))
    assert b.log_prob(torch.tensor(2.0)) == pytest.approx(stats.binom(5, 0.5).logpmf(2))


def test_scalar_parameter_types_stay_python_floats():
    d = D.Normal(np.float64(1.0), np.array(2.0))
    assert d.batch_shape == () and type(d.mean) is float and type(d.stddev) is float
    assert type(d.log_prob(np.float32(0.5))) is float
    assert type(D.Poisson(2).sample(np.random.default_rng(0))) is int
    assert type(D.Bernoulli(0.5).sample(np.random.default_rng(0))) is int


def test_module_imports_neither_torch_nor_scipy():
    path = Path(D.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dists', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.Normal(0.0, 1.0).log_prob(0.3)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'scipy' not in sys.modules, 'scipy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_table_of_distribution_types():
    """distributions.TYPES is the only table: the PPX codec and the dataset ids derive from it,
    and the wire and on-disk formats are what they always were."""
    from etalumis_core.data import records
    from etalumis_core.ppx import wire

    assert records.DIST_NAMES == ("Normal", "Uniform", "Categorical", "Poisson", "Bernoulli",
                                  "Beta", "Exponential", "Gamma", "LogNormal", "Binomial",
                                  "Weibull", "TruncatedNormal", "Mixture")
    assert wire.DISTRIBUTION_TYPES == {
        1: ("Normal", ("mean", "stddev")), 2: ("Uniform", ("low", "high")),
        3: ("Categorical", ("probs",)), 4: ("Poisson", ("rate",)), 5: ("Bernoulli", ("probs",)),
        6: ("Beta", ("concentration1", "concentration0")), 7: ("Exponential", ("rate",)),
        8: ("Gamma", ("concentration", "rate")), 9: ("LogNormal", ("loc", "scale")),
        10: ("Binomial", ("total_count", "probs")), 11: ("Weibull", ("scale", "concentration"))}
    assert sorted(t.stored for t in D.TYPES) == list(range(len(D.TYPES)))
    for t in D.TYPES:
        cls = D.BY_NAME[t.name]
        assert (cls.name, cls.param_names, cls.ppx_type) == (t.name, t.params, t.ppx)
        assert records.DIST_IDS[t.name] == t.stored
        assert wire.DISTRIBUTION_TYPES.get(t.ppx) == ((t.name, t.params) if t.ppx else None)
        assert wire.distribution_types().get(t.ppx) is (cls if t.ppx else None)


def test_address_suffixes_are_pyprobs():
    """What engines append to a base address, as pyprob 1.5.0 writes it."""
    assert D.Categorical([0.5, 0.5]).address_suffix == "Categorical(len_probs:2)"
    assert D.Categorical(np.full((4, 3), 1 / 3)).address_suffix == "Categorical(len_probs:3)"
    assert D.Mixture([D.Normal(0.0, 1.0), D.Normal(2.0, 1.0)]).address_suffix == \
        "Mixture(Normal, Normal)"
    for name in ("Normal", "Uniform", "Poisson", "Bernoulli", "Beta", "Exponential", "Gamma",
                 "LogNormal", "Binomial", "Weibull", "TruncatedNormal"):
        assert D.BY_NAME[name].address_suffix == name
