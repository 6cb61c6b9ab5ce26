"""Small models with known posteriors: the built-in examples, test cases and benchmarks."""

from __future__ import annotations

import math

import numpy as np

from .distributions import Categorical, Normal, Poisson, Uniform
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
    cov = lik_var * np.eye(n) + prior_var * np.ones((n, n))
    diff = np.asarray(observations) - GAUSSIAN_PRIOR_MEAN
    sign, logdet = np.linalg.slogdet(cov)
    log_evidence = -0.5 * (n * math.log(2 * math.pi) + logdet + diff @ np.linalg.solve(cov, diff))
    return post_mean, math.sqrt(post_var), float(log_evidence)


def gaussian_marsaglia() -> float:
    """:func:`gaussian_unknown_mean` with mu drawn by Marsaglia's polar method: a rejection
    loop of uniform pairs until one falls inside the unit disc, so the number of random
    choices varies between traces. Same posterior as :func:`gaussian_unknown_mean` (mu is a
    tag here)."""
    while True:
        u1 = sample(Uniform(-1.0, 1.0))
        u2 = sample(Uniform(-1.0, 1.0))
        s = u1 * u1 + u2 * u2
        if 0.0 < s < 1.0:
            break
    mu = GAUSSIAN_PRIOR_MEAN + GAUSSIAN_PRIOR_STD * u1 * math.sqrt(-2.0 * math.log(s) / s)
    tag(mu, name="mu")
    likelihood = Normal(mu, GAUSSIAN_LIKELIHOOD_STD)
    observe(likelihood, name="obs0")
    observe(likelihood, name="obs1")
    return mu


# A 3-state hidden Markov model with Gaussian emissions (the classic probabilistic-programming
# test case): 17 hidden states x0..x16, observations y1..y16.
HMM_INITIAL = np.array([1.0, 1.0, 1.0]) / 3.0
HMM_TRANSITIONS = np.array([[0.1, 0.5, 0.4], [0.2, 0.2, 0.6], [0.15, 0.15, 0.7]])
HMM_MEANS = np.array([-1.0, 1.0, 0.0])
HMM_STD = 1.0
HMM_OBSERVATIONS = [0.9, 0.8, 0.7, 0.0, -0.025, -5.0, -2.0, -0.1, 0.0, 0.13, 0.45, 6.0, 0.2,
                    0.3, -1.0, -1.0]


def hidden_markov_model() -> list[int]:
    """x0 ~ Cat(1/3, 1/3, 1/3); x_t | x_{t-1} ~ Cat(row x_{t-1} of the transition matrix);
    y_t ~ Normal(mean of x_t, 1) for t = 1..16. All latents discrete: the exact posterior
    marginals come from :func:`hmm_posterior` (forward-backward)."""
    states = [sample(Categorical(HMM_INITIAL), name="x0")]
    for t in range(1, len(HMM_OBSERVATIONS) + 1):
        x = sample(Categorical(HMM_TRANSITIONS[states[-1]]), name=f"x{t}")
        states.append(x)
        observe(Normal(float(HMM_MEANS[x]), HMM_STD), name=f"y{t}")
    return states


def hmm_observations() -> dict[str, float]:
    return {f"y{t}": y for t, y in enumerate(HMM_OBSERVATIONS, start=1)}


def hmm_posterior(observations: list[float] | None = None) -> tuple[np.ndarray, float]:
    """Exact posterior marginals P(x_t = k | y), shape (17, 3), and the log evidence of
    :func:`hidden_markov_model`, by the forward-backward recursions."""
    ys = HMM_OBSERVATIONS if observations is None else observations
    emit = np.array([[math.exp(-0.5 * ((y - m) / HMM_STD) ** 2) / (HMM_STD * math.sqrt(2 * math.pi))
                      for m in HMM_MEANS] for y in ys])
    forward = [HMM_INITIAL.copy()]
    log_evidence = 0.0
    for e in emit:
        alpha = (forward[-1] @ HMM_TRANSITIONS) * e
        log_evidence += math.log(alpha.sum())
        forward.append(alpha / alpha.sum())
    backward = [np.ones(3)]
    for e in emit[::-1]:
        beta = HMM_TRANSITIONS @ (e * backward[0])
        backward.insert(0, beta / beta.sum())
    marginals = np.array([f * b for f, b in zip(forward, backward)])
    return marginals / marginals.sum(axis=1, keepdims=True), log_evidence


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


def make_gaussian_marsaglia() -> PythonSimulator:
    return PythonSimulator(gaussian_marsaglia, name="gaussian_marsaglia",
                           observations={"obs0": (), "obs1": ()})


def make_hidden_markov_model() -> PythonSimulator:
    return PythonSimulator(hidden_markov_model, name="hmm",
                           observations={f"y{t}": () for t in range(1, len(HMM_OBSERVATIONS) + 1)})


def make_poisson_mixture() -> PythonSimulator:
    return PythonSimulator(poisson_mixture_count, name="poisson_mixture",
                           observations={"y": ()})


def make_discrete_weather() -> PythonSimulator:
    return PythonSimulator(discrete_weather, name="weather", observations={"wet": ()})
