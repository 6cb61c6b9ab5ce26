"""Every engine against exact posteriors, with tolerances from the estimator's standard error."""

import functools
import math

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.engines.smc import genealogy_ess
from etalumis_core import models
from etalumis_core.models import (discrete_weather, gaussian_marsaglia, gaussian_posterior,
                                  gaussian_unknown_mean, hidden_markov_model, hmm_observations,
                                  hmm_posterior, poisson_mixture_count)

Z = 4.0  # standard errors allowed: a correct engine fails with probability ~6e-5 per check


def within(estimate, exact, stderr, what):
    assert abs(estimate - exact) < Z * stderr, (
        f"{what}: estimate {estimate:.5f}, exact {exact:.5f}, {Z} standard errors = {Z * stderr:.5f}")


def effective_size(posterior, key):
    """ESS of a variable as its engine reports it: Kish for weighted samples,
    autocorrelation-based for MCMC, genealogy-based for SMC."""
    return posterior.ess_of(key)


def smc_log_evidence_stderr(posterior):
    """Each round's incremental weights keep ESS = ess_fraction × N, and the variance of the
    log of their mean is about (N / ESS − 1) / N; the rounds add up. N counts the particles,
    not the traces the posterior recycled from them."""
    n = len(posterior.metadata["genealogy"]["groups"])
    fraction = posterior.metadata["options"]["ess_fraction"]
    return math.sqrt(posterior.metadata["rounds"] * (1 / fraction - 1) / n)


ENGINES = [
    ("importance", dict(num_traces=40000), {}),
    ("lmh", dict(num_traces=30000), dict(burn_in=500, chains=2)),
    ("rmh", dict(num_traces=20000), dict(burn_in=500, chains=2)),
    ("smc", dict(num_traces=2000), {}),
]


@pytest.mark.parametrize("engine,run,options", ENGINES, ids=[e[0] for e in ENGINES])
def test_gaussian_unknown_mean(engine, run, options, gaussian_obs):
    mean, std, log_evidence = gaussian_posterior([8.0, 9.0])
    assert (round(mean, 4), round(std, 6), round(log_evidence, 4)) == (7.25, 0.912871, -8.2394)
    post = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine=engine, seed=1,
                    **run, **options)
    mu = post.marginal("mu")
    ess = effective_size(post, "mu")
    assert ess > 100
    within(float(mu.mean), mean, std / math.sqrt(ess), f"{engine} posterior mean")
    # Standard error of a sample standard deviation: std / sqrt(2 ess).
    within(float(mu.stddev), std, std / math.sqrt(2 * ess), f"{engine} posterior stddev")
    if engine == "importance":
        # Relative error of the mean weight: sqrt((n / ess - 1) / n).
        n = post.num_traces
        within(post.log_evidence, log_evidence, math.sqrt((n / post.ess - 1) / n), "log evidence")
    if engine == "smc":
        within(post.log_evidence, log_evidence, smc_log_evidence_stderr(post), "log evidence")


def poisson_mixture_joint(y):
    """p(n, y) for n = min(Poisson(2), 4); total | n ~ Normal(0, 3 sqrt n); y ~ Normal(total, 1)."""
    from scipy import stats

    prior = [stats.poisson.pmf(k, 2.0) for k in range(4)]
    prior.append(1 - sum(prior))
    like = [stats.norm.pdf(y, 0, math.sqrt(9 * n + 1)) for n in range(5)]
    return np.array(prior) * np.array(like)


def exact_poisson_mixture(y):
    """Posterior of the number of clusters and mean of their total, by enumeration."""
    joint = poisson_mixture_joint(y)
    p_n = joint / joint.sum()
    mean_total = sum(p_n[n] * y * 9 * n / (9 * n + 1) for n in range(5))
    return p_n, mean_total


def check_poisson_mixture(post, label, y=6.0, total=True, floor=0.0):
    """P(n) (and E[total]) of a posterior of ``poisson_mixture_count`` against enumeration,
    each within its Monte Carlo error; ``floor`` bounds that error's variance term below, for
    runs whose ESS is too small to resolve the ~1e-8 mass at n = 0."""
    p_n, mean_total = exact_poisson_mixture(y)
    probs = post.marginal("clusters").probabilities()
    ess = effective_size(post, "clusters")
    for n in range(5):
        p = p_n[n]
        within(probs.get(n, 0.0), p, math.sqrt(max(p * (1 - p), floor) / ess), f"{label} P(n={n})")
    if total:
        marginal = post.marginal("total")
        within(float(marginal.mean), mean_total,
               float(marginal.stddev) / math.sqrt(effective_size(post, "total")),
               f"{label} E[total]")


@pytest.mark.parametrize("engine,run,options", [
    ("importance", dict(num_traces=30000), {}),
    ("lmh", dict(num_traces=40000), dict(burn_in=500, chains=2)),
    ("rmh", dict(num_traces=40000), dict(burn_in=500, chains=2)),
    ("smc", dict(num_traces=3000), {}),
], ids=["importance", "lmh", "rmh", "smc"])
def test_number_of_latents_depends_on_a_choice(engine, run, options):
    """Trans-dimensional: wrong trace-size terms in MH bias P(n) visibly."""
    y = 6.0
    post = et.infer(poisson_mixture_count, observe={"y": y}, engine=engine, seed=2, **run,
                    **options)
    assert len(post.trace_types) >= 4  # n = 1..4 latent means (n = 0 has ~1e-8 mass)
    check_poisson_mixture(post, engine, y)


def exact_weather(wet):
    table = {}
    for cloudy, pc in enumerate([0.6, 0.4]):
        for rain, pr in enumerate([0.8, 0.2] if cloudy == 0 else [0.3, 0.7]):
            pw = [0.9, 0.1] if rain == 0 else [0.2, 0.8]
            table[(cloudy, rain)] = pc * pr * pw[wet]
    z = sum(table.values())
    return {k: v / z for k, v in table.items()}, z


@pytest.mark.parametrize("engine", ["importance", "lmh", "rmh", "smc"])
def test_discrete_model_by_enumeration(engine):
    exact, evidence = exact_weather(1)
    p_rain = exact[(0, 1)] + exact[(1, 1)]
    p_cloudy = exact[(1, 0)] + exact[(1, 1)]
    options = {"importance": {}, "smc": dict(num_traces=3000)}.get(
        engine, dict(burn_in=200, chains=2))
    post = et.infer(discrete_weather, observe={"wet": 1}, engine=engine, seed=3,
                    **{"num_traces": 20000, **options})
    for key, p in (("rain", p_rain), ("cloudy", p_cloudy)):
        ess = effective_size(post, key)
        within(post.marginal(key).probabilities().get(1, 0.0), p, math.sqrt(p * (1 - p) / ess),
               f"{engine} P({key}=1)")
    if engine == "importance":
        n = post.num_traces
        within(post.log_evidence, math.log(evidence), math.sqrt((n / post.ess - 1) / n),
               "log evidence")
    if engine == "smc":
        within(post.log_evidence, math.log(evidence), smc_log_evidence_stderr(post),
               "log evidence")


def ridge(y=1.0, noise=0.01):
    a = et.sample(et.Normal(0.0, 1.0), name="a")
    b = et.sample(et.Normal(0.0, 1.0), name="b")
    et.observe(et.Normal(a + b, noise), y, name="y")


def test_smc_follows_a_narrow_ridge():
    """y = a + b + noise with noise 0.01: the posterior is a ridge 100 times longer than wide,
    along which single-site moves crawl. Exactly, a | y ~ Normal(y / (2 + s²), v) with
    v = (2 s² / (2 + s²) + 2) / 4 (a = (s + d) / 2, s = a + b, d = a - b independent)."""
    s2 = 0.01 ** 2
    mean, std = 1.0 / (2 + s2), math.sqrt((2 * s2 / (2 + s2) + 2) / 4)
    post = et.infer(ridge, engine="smc", num_traces=1000, seed=4)
    a = post.marginal("a")
    ess = effective_size(post, "a")
    assert ess > 200
    within(float(a.mean), mean, std / math.sqrt(ess), "smc E[a]")
    within(float(a.stddev), std, std / math.sqrt(2 * ess), "smc sd[a]")
    a_plus_b = post.marginal("a").values + post.marginal("b").values
    # The posterior sits on the ridge: the weight beyond 6 widths is that of the recycled
    # proposals that left it, each weighted by its acceptance probability, all but 0.
    assert np.sum(post.weights[np.abs(a_plus_b - 1.0) >= 6 * 0.01]) < 1e-6
    stats = post.metadata["round_stats"][-1]
    assert stats["acceptance_block"] > 0.1, stats


class RidgeWithAMove(et.PythonSimulator):
    """The ridge, with the move its owner knows: (a, b) -> (a + t, b - t) keeps a + b."""

    def __init__(self):
        super().__init__(ridge, name="ridge", observations={"y": ()})

    def moves(self):
        return (self.slide,)

    @staticmethod
    def slide(values, rng):
        a, b = values.get("ridge+1__Normal__1"), values.get("ridge+2__Normal__1")
        if a is None or b is None:
            return None
        t = float(rng.normal(0.0, 1.0))
        return {"ridge+1__Normal__1": a + t, "ridge+2__Normal__1": b - t}, 0.0


def test_smc_uses_a_simulators_own_moves():
    s2 = 0.01 ** 2
    mean, std = 1.0 / (2 + s2), math.sqrt((2 * s2 / (2 + s2) + 2) / 4)
    sim = RidgeWithAMove()
    post = et.infer(sim, engine="smc", num_traces=1000, seed=4)
    stats = post.metadata["round_stats"][-1]
    assert stats["acceptance_model"] > 0.3, stats   # the slide never leaves the ridge
    ess = effective_size(post, "a")
    within(float(post.marginal("a").mean), mean, std / math.sqrt(ess), "E[a] with the move")
    within(float(post.marginal("a").stddev), std, std / math.sqrt(2 * ess), "sd[a] with the move")


def test_smc_can_keep_a_simulators_own_moves_for_the_last_round():
    """model_moves="final": the slide runs at β = 1 only, and the posterior stays exact."""
    s2 = 0.01 ** 2
    mean, std = 1.0 / (2 + s2), math.sqrt((2 * s2 / (2 + s2) + 2) / 4)
    post = et.infer(RidgeWithAMove(), engine="smc", num_traces=1000, seed=4, model_moves="final")
    rounds = post.metadata["round_stats"]
    assert len(rounds) > 1 and all(r["tried_model"] == 0 for r in rounds[:-1]), rounds
    assert rounds[-1]["beta"] == 1.0 and rounds[-1]["acceptance_model"] > 0.3, rounds[-1]
    ess = effective_size(post, "a")
    within(float(post.marginal("a").mean), mean, std / math.sqrt(ess), "E[a], final slide")
    within(float(post.marginal("a").stddev), std, std / math.sqrt(2 * ess), "sd[a], final slide")
    with pytest.raises(ValueError, match="model_moves must be true, false, 'final' or 'jumps'"):
        et.SequentialMonteCarlo(model_moves="last")


K, WIDE, NARROW = "k__Categorical(len_probs:2)__1", "wide__Uniform__1", "narrow__Uniform__1"


def twins(y=1.3, noise=0.001):
    """Two explanations that the data cannot tell apart: x ~ Uniform(0, 2), or 2 x with
    x ~ Uniform(0, 1). Exactly, p(k = 1 | y) = 0.2 · ½ / (0.8 · ½ + 0.2 · ½) = 0.2; a prior
    redraw of k lands within the likelihood's width 0.001 almost never."""
    k = int(et.sample(et.Categorical([0.8, 0.2]), name="k", address="k"))
    x = (et.sample(et.Uniform(0.0, 2.0), address="wide") if k == 0
         else 2.0 * et.sample(et.Uniform(0.0, 1.0), address="narrow"))
    et.observe(et.Normal(x, noise), y, name="y")


class TwinsWithAJump(et.PythonSimulator):
    """The twins, with the jump their owner knows: k flips and x keeps the mean it gives."""

    def __init__(self, log_jacobian=math.log(2.0), complete=True):
        super().__init__(twins, name="twins", observations={"y": ()})
        self.log_jacobian, self.complete = log_jacobian, complete

    def jumps(self):
        return (self.flip,)

    def flip(self, values, rng):
        if int(values[K]) == 0:
            new, log_jacobian = {K: 1, NARROW: values[WIDE] / 2.0}, -self.log_jacobian
        else:
            new, log_jacobian = {K: 0, WIDE: 2.0 * values[NARROW]}, self.log_jacobian
        return (new if self.complete else {K: new[K]}), log_jacobian


@pytest.mark.parametrize("model_moves", [True, "final", "jumps"])
def test_smc_jumps_between_explanations_and_stays_exact(model_moves):
    """With the jump the population weighs both explanations by their posterior, 0.8 : 0.2;
    with its Jacobian left out the odds double (1/3 for k = 1), and the same run must see it."""
    def share(sim):
        post = et.infer(sim, engine="smc", num_traces=400, seed=2, model_moves=model_moves)
        k = post.marginal("k")
        return float(np.sum(k.weights * (k.values == 1)) / np.sum(k.weights)), post
    right, post = share(TwinsWithAJump())
    rounds = post.metadata["round_stats"]
    assert rounds[-1]["acceptance_jump"] > 0.2, rounds[-1]
    if model_moves == "final":
        assert all(r["tried_jump"] == 0 for r in rounds[:-1]), rounds
    else:   # "jumps": in every round, as with True
        assert len(rounds) > 1 and all(r["tried_jump"] > 0 for r in rounds), rounds
    ess = effective_size(post, "k")
    within(right, 0.2, math.sqrt(0.2 * 0.8 / ess), "p(k = 1) with the jump")
    wrong, _ = share(TwinsWithAJump(log_jacobian=0.0))
    assert wrong - 0.2 > 3 * math.sqrt(0.2 * 0.8 / ess), wrong   # 1/3 expected: it notices
    # A jump that leaves a value of the new trace to be drawn is refused every time.
    post = et.infer(TwinsWithAJump(complete=False), engine="smc", num_traces=50, seed=2)
    stats = post.metadata["round_stats"]
    assert sum(r["tried_jump"] for r in stats) > 0
    assert all(r["acceptance_jump"] in (None, 0.0) for r in stats), stats


def test_smc_recycles_the_last_sweeps_proposals():
    """Each move of the last sweep leaves its proposal, weighted by its acceptance probability,
    and the trace it was proposed from, weighted by the rest: a jump from k = 0 to k = 1 is
    accepted with probability 0.25, so particles that all sit at k = 0 still give k = 1 a
    share, where their own count says 0 or 1/20 at random. Over 50 runs of 20 particles the
    estimate of p(k = 1) = 0.2 spreads 0.038 recycled, 0.095 from the particles alone, and
    0.018 with every sweep of the last round recycled."""
    def share(recycle, seed):
        post = et.infer(TwinsWithAJump(), engine="smc", num_traces=20, seed=seed,
                        recycle=recycle, progress=False)
        k = post.marginal("k")
        return float(np.sum(k.weights * (k.values == 1)) / np.sum(k.weights)), post
    seeds = 50
    plain = [share(False, seed) for seed in range(seeds)]
    recycled = [share(True, seed) for seed in range(seeds)]
    whole_round = [share("round", seed) for seed in range(seeds)]
    assert all(post.num_traces == 20 and np.all(post.log_weights == 0) for _, post in plain)
    for post in (recycled[0][1], whole_round[0][1]):
        particles = np.asarray(post.metadata["genealogy"]["particles"])
        assert post.num_traces > 20 and sorted(set(particles)) == list(range(20))
        assert np.allclose(np.bincount(particles, weights=post.weights), 1 / 20)   # one each
        assert post.engine_summary["ess_kind"].startswith("smc genealogy")
    assert whole_round[0][1].num_traces > 2 * recycled[0][1].num_traces
    plain, recycled, whole_round = (np.array([s for s, _ in runs])
                                    for runs in (plain, recycled, whole_round))
    for label, shares in (("particles", plain), ("recycled", recycled),
                          ("whole round", whole_round)):   # all exact
        within(float(shares.mean()), 0.2, shares.std() / math.sqrt(seeds), label)
    assert recycled.std() < 0.6 * plain.std(), (recycled.std(), plain.std())
    assert whole_round.std() < 0.75 * recycled.std(), (whole_round.std(), recycled.std())


def test_smc_recycles_a_proposal_however_unlikely_its_acceptance():
    from etalumis_core.engines.smc import _Recycled
    current, proposed = object(), object()
    kept = _Recycled()
    for _ in range(3):
        kept.add(current, None)   # nothing proposed: the particle stays
    kept.add(current, (5e-324, proposed))   # the smallest float: α / 4 would round to 0
    log_weights = {id(trace): log_weight for trace, log_weight in kept.weighted()}
    assert log_weights[id(current)] == pytest.approx(0.0)
    assert log_weights[id(proposed)] == pytest.approx(math.log(5e-324) - math.log(4.0))


def test_smc_reports_its_rounds_and_rejects_bad_options(gaussian_obs):
    post = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", num_traces=200,
                    seed=0)
    betas = post.metadata["betas"]
    assert betas[-1] == 1.0 and all(b1 > b0 for b0, b1 in zip(betas, betas[1:]))
    # Equally weighted particles, but not independent: the ESS comes from the genealogy.
    assert post.engine_summary["ess_kind"].startswith("smc genealogy")
    assert 0 < post.ess <= 200
    assert post.ess == min(post.engine_summary["ess_by_latent"].values())
    assert post.log_evidence == post.metadata["log_evidence"]
    assert post.engine_summary["log_evidence_error"] > 0
    assert all(r["ess_weights"] > 0 and r["sweeps"] >= 5 for r in post.metadata["round_stats"])
    assert not post.metadata["truncated"]
    short = et.infer(ridge, engine="smc", num_traces=100, seed=0, max_rounds=2)
    assert short.metadata["rounds"] == 2 and short.metadata["truncated"]
    assert "raise max_rounds" in short.engine_summary["warnings"]["truncated"]
    with pytest.raises(ValueError, match="ess_fraction"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", ess_fraction=1.5)
    with pytest.raises(ValueError, match="at least 2 particles"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", num_traces=1)
    with pytest.raises(ValueError, match="recycle must be true, false or 'round'"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", recycle="all")
    # So few particles that no number of sweeps could bring their correlation with the
    # round's start under the threshold: each round still sweeps its `moves`.
    few = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", num_traces=4,
                   seed=0, progress=False)
    assert all(r["sweeps"] == 5 for r in few.metadata["round_stats"]) and few.ess > 0


@pytest.mark.parametrize("engine", ["importance", "lmh", "rmh", "smc"])
def test_same_seed_same_posterior_bit_for_bit(engine, gaussian_obs):
    runs = [et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine=engine,
                     num_traces=500, seed=11) for _ in range(2)]
    assert np.array_equal(runs[0].log_weights, runs[1].log_weights)
    assert np.array_equal(runs[0].marginal("mu").values, runs[1].marginal("mu").values)
    other = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine=engine,
                     num_traces=500, seed=12)
    assert not np.array_equal(other.marginal("mu").values, runs[0].marginal("mu").values)


def test_seed_is_recorded_when_not_given(gaussian_obs):
    post = et.infer(gaussian_unknown_mean, observe=gaussian_obs, num_traces=50)
    again = et.infer(gaussian_unknown_mean, observe=gaussian_obs, num_traces=50,
                     seed=post.metadata["seed"])
    assert np.array_equal(post.log_weights, again.log_weights)


def test_mh_burn_in_thinning_chains_and_acceptance(gaussian_obs):
    post = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="rmh", num_traces=1001,
                    seed=5, chains=3, burn_in=100, thinning=3)
    assert post.num_traces == 1001
    assert post.num_chains == 3
    assert sorted(np.bincount(post.chain).tolist()) == [333, 334, 334]
    assert 0.05 < post.metadata["acceptance_rate"] < 0.95
    assert len(post.metadata["acceptance_rate_per_chain"]) == 3
    assert post.r_hat("mu") < 1.1


def test_unknown_observation_name_is_a_clear_error():
    with pytest.raises(et.ObservationError, match=r"obs2.*obs0, obs1"):
        et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0, "obs2": 1.0},
                 num_traces=10, seed=0)


def test_missing_observation_is_a_clear_error():
    with pytest.raises(et.ObservationError, match=r"obs1.*has no value"):
        et.infer(gaussian_unknown_mean, observe={"obs0": 8.0}, num_traces=10, seed=0)


def test_nan_log_probability_is_a_clear_error():
    def broken():
        x = et.sample(et.Normal(0.0, 1.0), name="x")
        et.factor(float("nan") if x > -10 else 0.0, name="bad")

    with pytest.raises(et.NonFiniteLogProbError, match="bad"):
        et.infer(broken, num_traces=5, seed=0)


def test_impossible_observation_reports_zero_weight():
    def model():
        p = et.sample(et.Uniform(0.0, 1.0), name="p")
        et.observe(et.Uniform(0.0, p), name="y")

    post = et.infer(model, observe={"y": 2.0}, num_traces=20, seed=0)
    with pytest.raises(ValueError, match="zero weight"):
        post.marginal("p")


def test_bad_engine_options_are_clear_errors(gaussian_obs):
    with pytest.raises(ValueError, match="burn_in"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="rmh", burn_in=-1)
    with pytest.raises(ValueError, match="num_traces"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, num_traces=0)
    with pytest.raises(et.PluginError, match="unknown engine 'mhh'.*rmh"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="mhh")


def test_smc_matches_the_hmm_by_forward_backward():
    """An all-discrete model: no block step applies, so every sweep moves every particle by a
    prior redraw, and rounds sweep until the particles decorrelate."""
    exact, log_evidence = hmm_posterior()
    post = et.infer(hidden_markov_model, observe=hmm_observations(), engine="smc",
                    num_traces=200, seed=5, progress=False)
    for stats in post.metadata["round_stats"]:
        assert stats["tried_block"] == 0
        assert stats["tried_redraw"] == 200 * stats["sweeps"]   # every particle, every sweep
    for t in range(17):
        ess = post.ess_of(f"x{t}")
        assert ess > 20
        probs = post.marginal(f"x{t}").probabilities()
        for k in range(3):
            p = exact[t, k]
            # A floor of 1e-3 on the variance: a state the posterior all but excludes.
            within(probs.get(k, 0.0), p, math.sqrt(max(p * (1 - p), 1e-3) / ess), f"P(x{t}={k})")
    within(post.log_evidence, log_evidence, post.engine_summary["log_evidence_error"],
           "hmm log evidence")


def test_smc_on_a_rejection_loop():
    mean, std, _ = gaussian_posterior([8.0, 9.0])
    post = et.infer(gaussian_marsaglia, observe={"obs0": 8.0, "obs1": 9.0}, engine="smc",
                    num_traces=400, seed=6, progress=False)
    ess = post.ess_of("mu")
    assert ess > 50
    within(float(post.mean("mu")), mean, std / math.sqrt(ess), "E[mu] through a rejection loop")


def rejection_sampled_uniform():
    """x ~ Uniform(0, 1) drawn by a loop that accepts a quarter of its draws whatever they are,
    so traces hold different numbers of rejected draws at the base address of x before the
    accepted one; y ~ Normal(x, 0.002) pins x far inside the prior's spread."""
    while True:
        x = et.sample(et.Uniform(0.0, 1.0), address="x")
        if et.sample(et.Uniform(0.0, 1.0), address="accept") < 0.25:
            break
    et.tag(x, name="accepted_x")
    et.observe(et.Normal(x, 0.002), name="y")
    return x


def test_smc_steps_accepted_draws_by_differences_of_accepted_draws():
    """Differential evolution pairs repeated draws at one base address from the last. Paired
    from the first, a particle's accepted x steps by the difference of other particles'
    rejected draws, noise across the whole prior, and the last round ends with its particles
    still correlated 0.95-0.99 with where it started (seeds 1-3); paired from the last,
    0.74-0.77."""
    post = et.infer(rejection_sampled_uniform, observe={"y": 0.6}, engine="smc", num_traces=200,
                    seed=1, progress=False)
    assert post.metadata["round_stats"][-1]["correlation_with_start"] < 0.88
    ess = post.ess_of("accepted_x")
    assert ess > 50
    within(float(post.mean("accepted_x")), 0.6, 0.002 / math.sqrt(ess), "E[x] through the loop")


def test_stratified_smc_stays_exact_across_dimensions():
    """Reserving part of every resampling for each number of clusters the start population
    drew changes which particles survive, not the posterior nor the evidence."""
    y = 6.0
    post = et.infer(poisson_mixture_count, observe={"y": y}, engine="smc", num_traces=3000,
                    seed=2, stratify="n", progress=False)
    assert max(r["strata"] for r in post.metadata["round_stats"]) >= 5
    assert set(post.metadata["start_shares"]) >= {"0", "1", "2", "3", "4"}
    check_poisson_mixture(post, "stratified smc", y, floor=1e-3)
    within(post.log_evidence, math.log(poisson_mixture_joint(y).sum()),
           smc_log_evidence_stderr(post), "log evidence")


def test_stratified_smc_corrects_for_the_shares_it_reserves():
    """y = 20 leaves n = 0..2 clusters almost no posterior mass (P(n=2) ≈ 0.01) though they hold
    two thirds of the start population: every resampling reserves them about a third of its
    draws, and only the weight those draws carry keeps P(n) exact (without it P(n=2) comes out
    near 0.12, thirteen standard errors off)."""
    y = 20.0
    post = et.infer(poisson_mixture_count, observe={"y": y}, engine="smc", num_traces=1000,
                    seed=3, stratify="n", progress=False)
    rounds = post.metadata["round_stats"]
    assert len(rounds) > 3 and all(r["strata"] >= 3 for r in rounds[:-1]), rounds
    check_poisson_mixture(post, "stratified smc, y = 20", y, floor=1e-3)


def test_stratified_resampling_reserves_shares_and_corrects_weights():
    """A stratum the weights have all but dropped keeps its reserved share of the draws, and
    the weights its particles carry give every stratum back exactly its weight."""
    from etalumis_core.engines.smc import _stratified

    n = 1000
    strata = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    log_weight = {"a": math.log(0.98 / 600), "b": math.log(0.02 / 300), "c": -math.inf}
    log_w = np.array([log_weight[s] for s in strata])
    start = {"a": 0.2, "b": 0.3, "c": 0.5}
    chosen, carried = _stratified(log_w, strata, start, 0.5, np.random.default_rng(0))
    picked = np.array(strata)[chosen]
    share = {"a": 0.5 * 0.98 + 0.5 * 0.2, "b": 0.5 * 0.02 + 0.5 * 0.3}
    for s, allotted in share.items():
        assert abs(np.sum(picked == s) - n * allotted / sum(share.values())) <= 1
    assert not np.any(picked == "c")   # no weight, no draws: its reserve goes to the others
    w = np.exp(carried)
    assert np.sum(w[picked == "b"]) / np.sum(w) == pytest.approx(0.02, rel=1e-2)


def test_stratifying_by_a_given_choice_is_plain_smc():
    """`+given.channel=10` with the tau engine's stratify=channel: a choice the job conditions
    on has one value, so the run is the unstratified one, to the bit."""
    run = functools.partial(et.infer, poisson_mixture_count, observe={"y": 6.0, "n": 2},
                            engine="smc", num_traces=64, seed=4, progress=False)
    plain, stratified = run(), run(stratify="n")
    assert "start_shares" not in stratified.metadata
    assert np.array_equal(plain.values_of("total")[1], stratified.values_of("total")[1])
    assert np.array_equal(plain.weights, stratified.weights)
    assert stratified.log_evidence == plain.log_evidence


def test_populations_are_independent_runs_weighing_alike(monkeypatch):
    """populations=2 is two runs of half the particles, with seeds drawn from (seed, r),
    pooled: each run's traces keep their values and half the posterior, the evidence is the
    runs' mean, each run's metadata stays readable, and each has its own progress bar."""
    from etalumis_core.engines import smc
    from etalumis_core.seeding import chunk_rng

    labels = []
    progress = smc.Progress
    monkeypatch.setattr(smc, "Progress", lambda total, label, *a, **k: labels.append(label)
                        or progress(total, label, *a, **k))
    run = functools.partial(et.infer, poisson_mixture_count, observe={"y": 6.0}, engine="smc",
                            progress=False, stratify="n")
    pooled = run(num_traces=65, seed=5, populations=2)
    assert labels == ["smc rounds, population 1 of 2", "smc rounds, population 2 of 2"]
    apart = [run(num_traces=size, seed=int(chunk_rng(5, r).integers(2 ** 62)))
             for r, size in enumerate((33, 32))]
    assert np.array_equal(pooled.values_of("total")[1],
                          np.concatenate([p.values_of("total")[1] for p in apart]))
    assert np.allclose(pooled.weights, np.concatenate([p.weights / 2 for p in apart]))
    probs = pooled.marginal("clusters").probabilities()
    for n in range(5):
        assert probs.get(n, 0.0) == pytest.approx(
            sum(p.marginal("clusters").probabilities().get(n, 0.0) for p in apart) / 2)
    assert pooled.log_evidence == pytest.approx(
        math.log(sum(math.exp(p.log_evidence) for p in apart) / 2))
    meta = pooled.metadata
    assert [m["particles"] for m in meta["populations"]] == [33, 32]
    assert len(meta["genealogy"]["groups"]) == 65 and sum(meta["final_shares"].values()) == \
        pytest.approx(1.0)
    assert meta["options"]["populations"] == 2 and 0 < pooled.ess <= 65
    assert "2 independent populations" in pooled.engine_summary["ess_kind"]
    with pytest.raises(ValueError, match="populations=3 needs at least 2 particles each"):
        run(num_traces=5, seed=0, populations=3)
    with pytest.raises(ValueError, match="populations must be a positive integer"):
        run(num_traces=8, seed=0, populations=0)


def test_smc_with_populations_stays_exact():
    """Three populations of a thousand particles: P(n), E[total] and the evidence within the
    Monte Carlo error of 3,000 particles."""
    post = et.infer(poisson_mixture_count, observe={"y": 6.0}, engine="smc", num_traces=3000,
                    seed=6, stratify="n", populations=3, progress=False)
    check_poisson_mixture(post, "smc, 3 populations", floor=1e-3)
    within(post.log_evidence, math.log(poisson_mixture_joint(6.0).sum()),
           smc_log_evidence_stderr(post), "log evidence")


def test_stratify_names_a_choice_the_model_makes(gaussian_obs):
    with pytest.raises(ValueError, match="stratify='chanel'.*discrete choices are: none"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", num_traces=50,
                 seed=0, stratify="chanel", progress=False)
    with pytest.raises(ValueError, match="stratum_share"):
        et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine="smc", stratify="n",
                 stratum_share=1.5)


def test_genealogy_ess_counts_lines_not_copies():
    rng = np.random.default_rng(0)
    n = 1000
    independent = rng.normal(size=n)
    assert genealogy_ess(independent, np.arange(n), np.arange(n), 1) > 0.8 * n
    # 50 ancestors, 20 identical copies each: worth about 50 draws.
    groups = np.repeat(np.arange(50), 20)
    copies = rng.normal(size=50)[groups]
    assert 25 < genealogy_ess(copies, np.arange(n), groups, 1) < 100


@pytest.mark.parametrize("engine", ["importance", "rmh", "smc"])
def test_the_ess_is_the_engines_and_agrees_everywhere(engine, gaussian_obs):
    post = et.infer(gaussian_unknown_mean, observe=gaussian_obs, engine=engine, num_traces=600,
                    seed=7, progress=False, **({"chains": 2} if engine == "rmh" else {}))
    summary = post.summary()
    assert summary["ess"] == post.ess == post.engine_summary["ess"]
    assert summary["variables"]["mu"]["ess"] == post.ess_of("mu")
    if engine == "rmh":
        assert post.ess == pytest.approx(post.mcmc_ess("mu"))
        assert post.ess < 600   # not the chain length
        assert post.log_evidence is None
    if engine == "importance":
        assert post.ess == pytest.approx(post.kish_ess)
        assert post.log_evidence is not None
    # A subset is another sample: no engine stands behind it, so it has Kish's ESS.
    half = post.subset(np.arange(300))
    assert half.ess == pytest.approx(half.kish_ess)


def test_low_ess_importance_runs_get_a_warning(gaussian_obs):
    poor = et.infer(gaussian_unknown_mean, observe=gaussian_obs, num_traces=200, seed=0)
    assert poor.ess < 30
    assert "effective sample size" in poor.engine_summary["warnings"]["low_ess"]
    good = et.infer(gaussian_unknown_mean, observe={"obs0": 1.0, "obs1": 1.0}, num_traces=200,
                    seed=0)
    assert good.ess > 30 and good.engine_summary["warnings"] == {}


def test_smc_progress_bar_has_a_total_and_ends_full(monkeypatch):
    """SMC's rounds are adaptive, so its bar's total is re-estimated after every round (for an
    ETA); when the run ends the bar is full."""
    from etalumis_core import progress as progress_module
    from etalumis_core.engines.smc import _rounds_left

    assert _rounds_left([0.0], 0.01) == pytest.approx(99.0)       # linear while no ratio
    assert _rounds_left([0.0, 0.01], 0.1) == pytest.approx(1.0)    # geometric: 0.1 -> 1
    assert _rounds_left([0.0, 0.5], 1.0) == 0.0
    totals = []
    original = progress_module.Progress.set_total

    def record(self, total):
        original(self, total)
        totals.append((self.done, self._bar.total))

    monkeypatch.setattr(progress_module.Progress, "set_total", record)
    et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0}, engine="smc",
             num_traces=64, seed=0, progress=True)
    assert len(totals) >= 2 and all(total >= done > 0 for done, total in totals)
    assert totals[-1][0] == totals[-1][1]   # the last round's estimate is exact


def test_genealogy_ess_counts_the_traces_recycled_from_a_particle_as_that_particle():
    rng = np.random.default_rng(0)
    n = 500
    groups = np.repeat(np.arange(100), 5)
    values = rng.normal(size=100)[groups] + rng.normal(size=n)
    alone = genealogy_ess(values, np.arange(n), groups, 2)
    # Each particle leaves two traces that split its weight: twice the same value is the
    # particle itself, and a weight of 0 on the second changes nothing either.
    twice = genealogy_ess(np.repeat(values, 2), np.repeat(np.arange(n), 2), groups, 2,
                          np.full(2 * n, 0.5 / n))
    assert twice == pytest.approx(alone)
    other = rng.normal(size=n)
    ignored = genealogy_ess(np.column_stack([values, other]).ravel(), np.repeat(np.arange(n), 2),
                            groups, 2, np.column_stack([np.full(n, 1 / n), np.zeros(n)]).ravel())
    assert ignored == pytest.approx(alone)


def test_genealogy_ess_of_a_shared_value_is_the_particle_count():
    # 6.785 * 1000 / 1000 is not 6.785 in floating point: the variance of this constant column
    # is rounding noise, not a sign of few effective draws.
    values = np.full(1000, 6.785)
    groups = np.repeat(np.arange(10), 100)
    assert genealogy_ess(values, np.arange(1000), groups, 3) == 1000.0


# -- network-guided SMC: exact for any network, trained or not ----------------------------------

GUIDED_MODELS = {"gaussian": models.make_gaussian, "poisson_mixture": models.make_poisson_mixture,
                 "weather": models.make_discrete_weather}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Per model, an untrained network (random weights, layers for the addresses of a few
    prior traces only, so that others fall back to the prior) and one trained briefly (3,200
    traces, seconds: enough to move its proposals far from the prior)."""
    import torch
    from etalumis_core.nn import ProposalNetwork, Trainer

    out = {}
    for name, make in GUIDED_MODELS.items():
        sim = make()
        torch.manual_seed(0)
        untrained = ProposalNetwork.for_simulator(sim, embedding_dim=8, lstm_dim=16)
        controller = et.Controller(np.random.default_rng(0), sample_missing_observations=True)
        untrained.prescan(et.run_trace(sim, controller) for _ in range(3))
        trained = ProposalNetwork.for_simulator(sim, embedding_dim=8, lstm_dim=16)
        Trainer(lr=3e-3, seed=0, num_threads=1, progress=False, plot=False,
                checkpoint_interval=10 ** 6).train(trained, sim, tmp_path_factory.mktemp(name),
                                                   steps=100, batch_size=32)
        out[name] = {"untrained": untrained, "trained": trained}
    return out


def guided(networks, model, network, num_traces, seed, **options):
    engine = et.NetworkGuidedSMC(networks[model][network], **options)
    return et.infer(GUIDED_MODELS[model](), observe=OBSERVED[model], engine=engine,
                    num_traces=num_traces, seed=seed, progress=False)


OBSERVED = {"gaussian": {"obs0": 8.0, "obs1": 9.0}, "poisson_mixture": {"y": 6.0},
            "weather": {"wet": 1}}


@pytest.mark.parametrize("network", ["untrained", "trained"])
def test_ic_smc_gaussian_posterior_and_evidence(networks, network):
    mean, std, log_evidence = gaussian_posterior([8.0, 9.0])
    post = guided(networks, "gaussian", network, 600, seed=1)
    ess = effective_size(post, "mu")
    assert ess > 100
    mu = post.marginal("mu")
    within(float(mu.mean), mean, std / math.sqrt(ess), f"ic_smc ({network}) posterior mean")
    within(float(mu.stddev), std, std / math.sqrt(2 * ess), f"ic_smc ({network}) posterior sd")
    within(post.log_evidence, log_evidence, smc_log_evidence_stderr(post), "log evidence")
    assert post.metadata["engine"] == "ic_smc"
    assert post.metadata["round_stats"][-1]["tried_independence"] > 0


@pytest.mark.parametrize("network", ["untrained", "trained"])
def test_ic_smc_trans_dimensional(networks, network):
    post = guided(networks, "poisson_mixture", network, 800, seed=2)
    assert effective_size(post, "clusters") > 50
    check_poisson_mixture(post, f"ic_smc ({network})", floor=1e-3)


@pytest.mark.parametrize("populations", [1, 2])
def test_ic_smc_stratified_stays_exact(networks, populations):
    """Strata drawn from the network's proposal, reserved through the bridge's rounds (in one
    population, or in two run apart and pooled)."""
    post = guided(networks, "poisson_mixture", "trained", 800, seed=2, stratify="n",
                  populations=populations)
    assert max(r["strata"] for m in post.metadata.get("populations", [post.metadata])
               for r in m["round_stats"]) >= 4
    check_poisson_mixture(post, "stratified ic_smc", total=False, floor=1e-3)
    within(post.log_evidence, math.log(poisson_mixture_joint(6.0).sum()),
           smc_log_evidence_stderr(post), "log evidence")


def test_ic_smc_says_when_the_posterior_drops_a_stratum_the_network_proposed(networks):
    """y = 6 cannot come from n = 0 clusters (the likelihood is e^-18 there), which the
    briefly trained network still proposes about an eighth of the time: the posterior keeps
    no particle there, and the run says so, naming the value and the network's share. Here
    the posterior is right to drop it; the warning says what to check, not that it is wrong."""
    post = guided(networks, "poisson_mixture", "trained", 200, seed=3, stratify="n",
                  dispute_share=0.03)
    meta = post.metadata
    assert sum(meta["final_shares"].values()) == pytest.approx(1.0)
    assert meta["start_shares"]["0"] >= 0.03 and "0" not in meta["final_shares"]
    warning = meta["summary"]["warnings"]["lost_stratum"]
    assert f"the network proposed n = 0 ({meta['start_shares']['0']:.0%} of its proposals)" \
        in warning
    quiet = guided(networks, "poisson_mixture", "trained", 200, seed=3, stratify="n",
                   dispute_share=1.0)
    assert "lost_stratum" not in quiet.metadata["summary"]["warnings"]
    with pytest.raises(ValueError, match="dispute_share"):
        et.NetworkGuidedSMC(networks["gaussian"]["trained"], dispute_share=0.0)


@pytest.mark.parametrize("network", ["untrained", "trained"])
def test_ic_smc_discrete_model_by_enumeration(networks, network):
    exact, evidence = exact_weather(1)
    post = guided(networks, "weather", network, 600, seed=3)
    for key, p in (("rain", exact[(0, 1)] + exact[(1, 1)]), ("cloudy", exact[(1, 0)] + exact[(1, 1)])):
        ess = effective_size(post, key)
        within(post.marginal(key).probabilities().get(1, 0.0), p, math.sqrt(p * (1 - p) / ess),
               f"ic_smc ({network}) P({key}=1)")
    within(post.log_evidence, math.log(evidence), smc_log_evidence_stderr(post), "log evidence")


def test_ic_smc_retires_independence_moves_and_stays_exact(networks):
    """After a round that accepts fewer than ``min_independence_acceptance`` of its
    independence moves, the run leaves them out (here after the first round: the bound is 1),
    and the posterior is still the exact one; with the bound 0 they run to the end."""
    post = guided(networks, "poisson_mixture", "trained", 800, seed=2,
                  min_independence_acceptance=1.0)
    tried = [r["tried_independence"] for r in post.metadata["round_stats"]]
    assert len(tried) > 1 and tried[0] > 0 and not any(tried[1:])
    check_poisson_mixture(post, "ic_smc, independence moves retired", total=False, floor=1e-3)
    kept = guided(networks, "poisson_mixture", "trained", 64, seed=2,
                  min_independence_acceptance=0.0)
    assert all(r["tried_independence"] > 0 for r in kept.metadata["round_stats"])


def test_ic_smc_same_seed_same_posterior_and_pool_equals_serial(networks, tmp_path):
    runs = [guided(networks, "gaussian", "trained", 64, seed=11) for _ in range(2)]
    assert np.array_equal(runs[0].marginal("mu").values, runs[1].marginal("mu").values)
    assert runs[0].log_evidence == runs[1].log_evidence
    other = guided(networks, "gaussian", "trained", 64, seed=12)
    assert not np.array_equal(other.marginal("mu").values, runs[0].marginal("mu").values)
    path = tmp_path / "network.pt"
    networks["gaussian"]["trained"].save(path)
    spec = et.SimulatorSpec(models.make_gaussian, name="gaussian")
    with et.ProcessPoolExecutor(num_workers=2) as pool:
        pooled = et.infer(spec, observe=OBSERVED["gaussian"],
                          engine=et.NetworkGuidedSMC(str(path)), num_traces=64, seed=11,
                          executor=pool, progress=False)
    assert np.array_equal(pooled.marginal("mu").values, runs[0].marginal("mu").values)
    assert pooled.log_evidence == runs[0].log_evidence


def test_ic_smc_rejects_bad_options(networks):
    with pytest.raises(ValueError, match="needs network="):
        et.NetworkGuidedSMC(None)
    with pytest.raises(ValueError, match="independence_probability"):
        et.NetworkGuidedSMC(networks["gaussian"]["trained"], independence_probability=2.0)
    with pytest.raises(ValueError, match="min_independence_acceptance"):
        et.NetworkGuidedSMC(networks["gaussian"]["trained"], min_independence_acceptance=-0.1)
    with pytest.raises(ValueError, match="ess_fraction"):
        et.NetworkGuidedSMC(networks["gaussian"]["trained"], ess_fraction=1.5)


def test_ic_smc_moves_leave_the_bridge_invariant(networks):
    """The MH moves of one round of ic_smc, started from π_β (β = 0.1) itself, keep it: on the
    Gaussian model π_β(μ) ∝ q(μ | y)^(1−β) [p(μ) p(y | μ)]^β is known on a fine grid, with q
    scored by the network. A trained q sits far from the prior, so moves that targeted
    p L^β instead would drift the mean by several standard deviations."""
    from etalumis_core.engines.ic import ICController
    from etalumis_core.engines.mh import MHController
    from etalumis_core.engines.smc import MoveBatch, Particle, _move_chunk, _pool

    beta, n = 0.1, 1000
    network = networks["gaussian"]["trained"]
    sim = models.make_gaussian()
    observed = OBSERVED["gaussian"]
    rerun = MHController(np.random.default_rng(0), observed)
    address = et.run_trace(sim, rerun).controlled_addresses[0]
    grid = np.arange(-4.0, 14.0, 0.005)
    traces = []
    for mu in grid:
        rerun.previous, rerun.overrides = {address: float(mu)}, {}
        traces.append(et.run_trace(sim, rerun))
    scorer = ICController(np.random.default_rng(0), observed, network)
    log_q = np.array([scorer.score(t) for t in traces])
    log_p = np.array([t.log_prior for t in traces])
    log_pi = (1 - beta) * log_q + beta * (log_p + np.array([t.log_likelihood for t in traces]))
    pi = np.exp(log_pi - log_pi.max())
    pi /= pi.sum()
    mean = float(np.sum(pi * grid))
    std = float(np.sqrt(np.sum(pi * (grid - mean) ** 2)))
    prior_tempered = np.exp(log_p + beta * np.array([t.log_likelihood for t in traces])
                            - log_pi.max())
    assert abs(np.sum(prior_tempered * grid) / prior_tempered.sum() - mean) > 10 * std / math.sqrt(n)
    chosen = np.random.default_rng(1).choice(len(grid), size=n, p=pi)
    particles = [Particle(traces[i], log_q[i] - log_p[i]) for i in chosen]
    engine = et.NetworkGuidedSMC(network)
    item = MoveBatch(engine, observed, 5, (1, 0, 0), particles, _pool(particles), beta, 10,
                     False, "gaussian")
    moved = _move_chunk(sim, item, lambda count: None)
    mu = np.array([p.values[address] for p in moved.particles])
    assert np.mean(mu != grid[chosen]) > 0.5   # most particles moved
    within(float(mu.mean()), mean, std / math.sqrt(n), "mean of the moved population")
    within(float(mu.std()), std, std / math.sqrt(2 * n), "sd of the moved population")


def test_ic_smc_regeneration_keeps_the_choice_and_the_posterior(networks):
    """The regeneration move keeps n and everything before it and redraws the rest from the
    network: started from the exact posterior given n = 2 (the two cluster means, given
    y = 6), sweeps of it alone keep that posterior, and n stays. A regenerated trace records
    the network's density of the kept values too, as the network scores the whole trace:
    the move's ratio rests on that."""
    from etalumis_core.engines.ic import ICController
    from etalumis_core.engines.ic_smc import regeneration_move
    from etalumis_core.engines.mh import MHController
    from etalumis_core.engines.smc import (MoveBatch, Particle, _move_chunk, _pool,
                                           drawn_log_start_ratio)

    class RegenerationOnly(et.NetworkGuidedSMC):
        def kernels(self):
            return (("regeneration", regeneration_move),)

    n, y = 1000, 6.0
    network = networks["poisson_mixture"]["trained"]
    sim = models.make_poisson_mixture()
    observed = OBSERVED["poisson_mixture"]
    rerun = MHController(np.random.default_rng(0), observed)
    rerun.previous, rerun.overrides = {}, {}
    first = et.run_trace(sim, rerun).controlled_addresses[0]   # n
    rerun.previous = {first: 2}
    first, *means = et.run_trace(sim, rerun).controlled_addresses
    rng = np.random.default_rng(5)
    total_mean, total_sd = y * 18 / 19, math.sqrt(18 / 19)   # T = m1 + m2 ~ N(0, 18), y ~ N(T, 1)
    scorer = ICController(np.random.default_rng(0), observed, network)
    particles = []
    for total in rng.normal(total_mean, total_sd, n):
        m1 = rng.normal(total / 2, math.sqrt(4.5))
        rerun.previous = {first: 2, means[0]: m1, means[1]: total - m1}
        t = et.run_trace(sim, rerun)
        particles.append(Particle(t, scorer.score(t) - t.log_prior))

    with scorer.keeping(particles[0].values, "n"):
        regenerated = et.run_trace(sim, scorer)
    assert list(regenerated.controlled_addresses) == [first, *means]
    assert all(v.log_proposal is not None for v in regenerated.variables if v.control)
    assert drawn_log_start_ratio(regenerated) == pytest.approx(
        scorer.score(regenerated) - regenerated.log_prior, abs=1e-4)

    engine = RegenerationOnly(network, independence_probability=1.0, stratify="n")
    item = MoveBatch(engine, observed, 5, (1, 0, 0), particles, _pool(particles), 1.0, 10,
                     False, "poisson_mixture")
    moved = _move_chunk(sim, item, lambda count: None)
    assert all(p.values[first] == 2 for p in moved.particles)
    before = np.array([p.values[means[0]] for p in particles])
    assert np.mean([p.values[means[0]] for p in moved.particles] != before) > 0.5
    totals = np.array([p.values[means[0]] + p.values[means[1]] for p in moved.particles])
    within(float(totals.mean()), total_mean, total_sd / math.sqrt(n), "mean of m1 + m2")
    within(float(totals.std()), total_sd, total_sd / math.sqrt(2 * n), "sd of m1 + m2")
