"""Proposal heads and the proposal network: densities, support, sampling, growth, files."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core import models  # noqa: E402
from etalumis_core.data.records import (collate, family_of, prior_stats,  # noqa: E402
                                        record_from_trace, support_size)
from etalumis_core.errors import EtalumisError  # noqa: E402
from etalumis_core.nn import LARC, ProposalNetwork, make_head  # noqa: E402

# One prior of every distribution type the core has (and a mixture prior).
PRIORS = {
    "Normal": et.Normal(1.5, 2.0),
    "Uniform": et.Uniform(-2.0, 3.0),
    "Beta": et.Beta(2.0, 3.0),
    "TruncatedNormal": et.TruncatedNormal(0.0, 1.0, -1.0, 2.0),
    "Exponential": et.Exponential(0.5),
    "Gamma": et.Gamma(3.0, 2.0),
    "LogNormal": et.LogNormal(0.5, 0.7),
    "Weibull": et.Weibull(2.0, 1.5),
    "Poisson": et.Poisson(4.0),
    "Categorical": et.Categorical([0.1, 0.2, 0.3, 0.4, 0.0]),
    "Bernoulli": et.Bernoulli(0.3),
    "Binomial": et.Binomial(7, 0.4),
    "Mixture": et.Mixture([et.Normal(-1.0, 1.0), et.Normal(2.0, 0.5)], [0.3, 0.7]),
}


def _head(prior, seed: int):
    torch.manual_seed(seed)
    head = make_head(family_of(prior), 16, 1, 32, 3, support_size(prior))
    with torch.no_grad():   # push the head away from its near-prior initialisation
        head.net[-1].weight.mul_(20.0)
        head.net[-1].bias.add_(torch.randn_like(head.net[-1].bias))
    raw = head(torch.randn(1, 16))
    stats = prior_stats(prior, 1)
    return head, raw, stats, head.distribution(raw, stats, (), prior)


def _torch_log_prob(head, raw, stats, values) -> np.ndarray:
    v = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(-1, 1)
    s = torch.as_tensor(stats, dtype=torch.float32).expand(len(v), 1, 4)
    with torch.no_grad():
        return head.log_prob(raw.expand(len(v), -1, -1), v, s).double().numpy()


def _grid(prior, proposal):
    """Points and quadrature weights covering the proposal's mass, for its family."""
    family = family_of(prior)
    if family in ("count", "finite"):
        high = 200 if family == "count" else support_size(prior) - 1
        x = np.arange(0, high + 1, dtype=np.float64)
        return x, np.ones_like(x)
    if family == "interval":
        lo, hi = prior.support.low, prior.support.high
        x = np.linspace(lo, hi, 40001)
    elif family == "positive":
        u = np.linspace(-25.0, 8.0, 60001)    # integrate in log space: dx = x du
        x = np.exp(u)
        w = np.full_like(u, u[1] - u[0]) * x
        return x, w
    else:
        comps = proposal.distributions
        lo = min(c.mean - 12 * c.stddev for c in comps)
        hi = max(c.mean + 12 * c.stddev for c in comps)
        x = np.linspace(lo, hi, 60001)
    w = np.full_like(x, x[1] - x[0])
    w[0] = w[-1] = w[0] / 2
    return x, w


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_head_density_is_normalised_on_the_support(name):
    prior = PRIORS[name]
    head, raw, stats, proposal = _head(prior, 0)
    x, w = _grid(prior, proposal)
    lp_torch = _torch_log_prob(head, raw, stats, x)
    mass = float(np.sum(np.exp(lp_torch) * w))
    assert mass == pytest.approx(1.0, abs=2e-3)
    # The numpy proposal used at inference is the same density (before masking values the
    # prior rules out, which the training data never holds).
    unmasked = head.distribution(raw, stats, ())
    lp_numpy = np.array([unmasked.log_prob(float(v)) for v in x[::997]])
    finite = np.isfinite(lp_numpy)
    np.testing.assert_allclose(lp_torch[::997][finite], lp_numpy[finite], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_head_support_matches_the_prior(name):
    prior = PRIORS[name]
    head, raw, stats, proposal = _head(prior, 1)
    rng = np.random.default_rng(0)
    draws = [proposal.sample(rng) for _ in range(300)]
    assert all(prior.support.contains(v) for v in draws)
    assert np.all(np.isfinite(prior.log_prob(np.asarray(draws, dtype=np.float64))))
    family = family_of(prior)
    outside = {"real": [], "positive": [-1.0, 0.0], "count": [-1.0, 2.5],
               "finite": [-1.0, support_size(prior), 0.5]}.get(family)
    if family == "interval":
        outside = [prior.support.low - 0.5, prior.support.high + 0.5]
    if outside:
        assert np.all(_torch_log_prob(head, raw, stats, outside) == -np.inf)
        assert all(proposal.log_prob(v) == -math.inf for v in outside)
    if family_of(prior) in ("count", "finite"):
        assert all(float(v).is_integer() for v in draws)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_head_sampling_matches_its_log_prob(name):
    prior = PRIORS[name]
    head, raw, stats, _ = _head(prior, 2)
    proposal = head.distribution(raw, stats, ())
    rng = np.random.default_rng(1)
    n = 4000
    draws = np.array([proposal.sample(rng) for _ in range(n)], dtype=np.float64)
    x, w = _grid(prior, proposal)
    p = np.exp(_torch_log_prob(head, raw, stats, x)) * w
    p /= p.sum()
    if family_of(prior) in ("count", "finite"):
        freq = np.bincount(draws.astype(int), minlength=len(x))[:len(x)] / n
        tol = 4.5 * np.sqrt(p * (1 - p) / n) + 1e-3
        assert np.all(np.abs(freq - p) <= tol)
    else:
        # Compare the CDF at a few quantiles (a Kolmogorov-Smirnov style check).
        cdf = np.cumsum(p)
        for q in (0.1, 0.3, 0.5, 0.7, 0.9):
            t = x[np.searchsorted(cdf, q)]
            assert np.mean(draws <= t) == pytest.approx(q, abs=4.5 * math.sqrt(q * (1 - q) / n) + 2e-3)


def test_array_valued_site_has_elementwise_proposals():
    prior = et.Normal(np.array([0.0, 5.0, -3.0]), np.array([1.0, 2.0, 0.5]))
    torch.manual_seed(0)
    head = make_head("real", 8, 3, 16, 2, 0)
    raw = head(torch.randn(1, 8))
    stats = prior_stats(prior, 3)
    proposal = head.distribution(raw, stats, (3,))
    value = proposal.sample(np.random.default_rng(0))
    assert value.shape == (3,)
    lp = head.log_prob(raw, torch.as_tensor(value, dtype=torch.float32)[None],
                       torch.as_tensor(stats, dtype=torch.float32)[None])
    assert float(lp.detach()) == pytest.approx(proposal.log_prob(value), abs=1e-3)


def _batch(simulator, n=32, seed=0):
    from etalumis_core.data import make_generation_controller
    from etalumis_core.seeding import chunk_rng

    controller = make_generation_controller(chunk_rng(seed, 0), None)
    return collate([record_from_trace(et.run_trace(simulator, controller), i) for i in range(n)])


def test_new_addresses_grow_layers_and_keep_optimizer_state():
    sim = models.make_poisson_mixture()
    torch.manual_seed(0)
    net = ProposalNetwork.for_simulator(sim, lstm_dim=16, embedding_dim=8)
    batch = _batch(sim)
    first = [sb for sb in batch if len(sb.trace_type) <= 1]
    from etalumis_core.data.records import Batch

    small = Batch(first)
    net.prescan(small)
    net.fit_normalizer(small)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    opt.zero_grad()
    net.loss(small).backward()
    opt.step()
    before = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in opt.state}
    new = net.ensure_sites([(a, *i) for a, i in batch.sites().items()])
    assert new and len(net.sites) == len(batch.sites())
    assert all(a in net.address_ids for a in batch.sites())
    opt.add_param_group({"params": new})
    opt.zero_grad()
    net.loss(batch).backward()
    for p, state in before.items():
        assert p in {id(q) for q in opt.state}
    # Keys of per-address layers are integer ids: addresses with dots and slashes are fine.
    assert all(k.startswith("a") and k[1:].isdigit() for k in net.heads.keys())


def test_network_file_roundtrip_and_simulator_check(tmp_path):
    sim = models.make_gaussian()
    torch.manual_seed(0)
    net = ProposalNetwork.for_simulator(sim, lstm_dim=16, embedding_dim=8)
    batch = _batch(sim)
    net.prescan(batch)
    net.fit_normalizer(batch)
    path = tmp_path / "net.pt"
    net.save(path)
    loaded = ProposalNetwork.load(path, simulator="gaussian")
    with torch.no_grad():
        assert float(loaded.loss(batch)) == pytest.approx(float(net.loss(batch)), abs=1e-6)
    with pytest.raises(EtalumisError, match="trained for simulator 'gaussian'"):
        ProposalNetwork.load(path, simulator="toy_tau_decay")
    # The file is plain tensors and a JSON header: loadable with weights_only=True.
    data = torch.load(path, weights_only=True)
    assert '"simulator": "gaussian"' in data["header"]


def test_larc_limits_each_layers_step_relative_to_its_weights():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.ones(10))
    opt = LARC(torch.optim.SGD([w], lr=1.0), trust_coefficient=0.01)
    w.grad = torch.full((10,), 100.0)
    opt.step()
    # Without LARC the step would be 100 per element; LARC caps it at 1% of |w|.
    assert float(torch.linalg.vector_norm(w.detach() - 1.0)) == pytest.approx(0.01 * math.sqrt(10), rel=1e-4)


def test_interval_proposal_draws_and_scores_as_a_mixture_of_truncated_normals():
    from etalumis_core.nn.heads import TruncatedNormalMixture

    rng = np.random.default_rng(0)
    for trial in range(200):
        low, high = sorted(rng.uniform(-5.0, 5.0, 2))
        probs = rng.dirichlet(np.ones(5))
        mean = low + (high - low) * rng.uniform(-0.5, 1.5, 5)
        scale = np.exp(rng.uniform(-9.0, 2.0, 5)) * (high - low)
        mixture = et.Mixture([et.TruncatedNormal(float(m), float(s), low, high)
                              for m, s in zip(mean, scale)], probs)
        fast = TruncatedNormalMixture(probs, mean, scale, low, high)
        draws = np.random.default_rng(trial), np.random.default_rng(trial)
        for _ in range(3):
            x = mixture.sample(draws[0])
            assert fast.sample(draws[1]) == x                   # the same draw, to the bit
            for v in (x, np.float64(x), low - 0.1, high + 0.1, float(rng.uniform(low, high))):
                assert fast.log_prob(v) == mixture.log_prob(v)
