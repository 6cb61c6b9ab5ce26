"""Small models with known posteriors: the built-in examples, test cases and benchmarks."""

from __future__ import annotations

import math

from .distributions import Categorical, Normal, Poisson
from .runtime import observe, sample, tag
from .simulator import PythonSimulator

GAUSSIAN_PRIOR_MEAN, GAUSSIAN_PRIOR_STD = 1.0, math.sqrt(5.0)
GAUSSIAN_LIKELIHOOD_STD = math.sqrt(2.0)


def gaussian_unknown_mean() -> float:
    """mu ~ Normal(1, sqrt 5); two observations ``obs0``, ``obs1`` ~ Normal(mu, sqrt 2).
    With observations 8 and 9 the posterior is Normal(7.25, 0.912871), log evidence -8.2394."""
    mu = sample(Normal(GAUSSIAN_PRIOR_MEAN, GAUSSIAN_PRIOR_STD), name="mu")
    likelihood = Normal(mu, GAUSSIAN_LIKELIHOOD_STD)
    observe(likelihood, name="obs0")
    observe(likelihood, name="obs1")
    return mu


def gaussian_posterior(observations: list[float]) -> tuple[float, float, float]:
    """Exact posterior mean, stddev and log evidence of :func:`gaussian_unknown_mean`."""
    prior_var, lik_var = GAUSSIAN_PRIOR_STD ** 2, GAUSSIAN_LIKELIHOOD_STD ** 2
    n = len(observations)
    post_var = 1.0 / (1.0 / prior_var + n / lik_var)
    post_mean = post_var * (GAUSSIAN_PRIOR_MEAN / prior_var + sum(observations) / lik_var)
    # Evidence: the observations are jointly normal with mean 1 and covariance
    # lik_var * I + prior_var * 11^T.
    import numpy as np

    cov = lik_var * np.eye(n) + prior_var * np.ones((n, n))
    diff = np.asarray(observations) - GAUSSIAN_PRIOR_MEAN
    sign, logdet = np.linalg.slogdet(cov)
    log_evidence = -0.5 * (n * math.log(2 * math.pi) + logdet + diff @ np.linalg.solve(cov, diff))
    return post_mean, math.sqrt(post_var), float(log_evidence)


def poisson_mixture_count() -> int:
    """The number of latent variables depends on an earlier choice: ``n ~ Poisson(2)`` clusters
    (at most 4, tagged ``clusters``), each with a mean ``Normal(0, 3)``;
    ``y`` ~ Normal(sum of means, 1)."""
    n = min(sample(Poisson(2.0), name="n"), 4)
    total = 0.0
    for _ in range(n):
        total += sample(Normal(0.0, 3.0), name=None)
    tag(n, name="clusters")
    tag(total, name="total")
    observe(Normal(total, 1.0), name="y")
    return n


def discrete_weather() -> int:
    """A fully discrete model for exact enumeration: cloudy ~ Cat(0.6, 0.4);
    rain | cloudy ~ Cat; the sprinkler reading is observed."""
    cloudy = sample(Categorical([0.6, 0.4]), name="cloudy")
    rain = sample(Categorical([0.8, 0.2] if cloudy == 0 else [0.3, 0.7]), name="rain")
    observe(Categorical([0.9, 0.1] if rain == 0 else [0.2, 0.8]), name="wet")
    return rain


def make_gaussian() -> PythonSimulator:
    return PythonSimulator(gaussian_unknown_mean, name="gaussian",
                           observations={"obs0": (), "obs1": ()})


def make_poisson_mixture() -> PythonSimulator:
    return PythonSimulator(poisson_mixture_count, name="poisson_mixture",
                           observations={"y": ()})


def make_discrete_weather() -> PythonSimulator:
    return PythonSimulator(discrete_weather, name="weather", observations={"wet": ()})
