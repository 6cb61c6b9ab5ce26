"""Inference compilation end to end: train on the Gaussian model, then importance sampling with
the network's proposals recovers the exact posterior with a high effective sample size."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core import models  # noqa: E402
from etalumis_core.errors import EtalumisError, ObservationError  # noqa: E402
from etalumis_core.nn import ProposalNetwork, Trainer  # noqa: E402

OBSERVE = {"obs0": 8.0, "obs1": 9.0}
MEAN, STD, LOG_EVIDENCE = models.gaussian_posterior([8.0, 9.0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("gaussian_ic")
    sim = models.make_gaussian()
    torch.manual_seed(0)
    network = ProposalNetwork.for_simulator(sim, embedding_dim=32, lstm_dim=64,
                                            embedding_options={"hidden_dims": (64,)})
    started = time.process_time()
    result = Trainer(lr=3e-3, lr_end=1e-4, lr_decay_power=1.0, seed=0, num_threads=1,
                     max_seconds=60, progress=False, checkpoint_interval=10_000).train(
        network, sim, out, steps=600, batch_size=64)
    cpu = time.process_time() - started
    return result, cpu


def test_ic_recovers_the_gaussian_posterior_with_high_ess(trained):
    result, cpu = trained
    assert cpu < 60 * 2    # at most 60 s of wall time, on at most two cores
    n = 2000
    post = et.infer(models.make_gaussian(), observe=OBSERVE, engine="ic",
                    network=result.network_path, num_traces=n, seed=1)
    assert post.ess >= 0.5 * n
    mu = post.marginal("mu")
    ess = post.ess
    assert abs(mu.mean - MEAN) < 4 * STD / math.sqrt(ess)
    assert abs(mu.stddev - STD) < 4 * STD / math.sqrt(2 * ess) + 0.01
    assert abs(post.log_evidence - LOG_EVIDENCE) < 0.05
    assert post.metadata["engine"] == "ic"
    assert post.metadata["ic"]["prior_fallbacks"] == 0
    prior = et.infer(models.make_gaussian(), observe=OBSERVE, engine="importance",
                     num_traces=n, seed=1)
    assert prior.ess < 0.01 * n


def test_ic_with_a_network_object_and_worker_processes(trained):
    result, _ = trained
    serial = et.infer(models.make_gaussian(), observe=OBSERVE,
                      engine=et.InferenceCompilation(result.network, chunk_size=50),
                      num_traces=200, seed=3)
    spec = et.SimulatorSpec(models.make_gaussian, name="gaussian")
    with et.ProcessPoolExecutor(2) as pool:
        pooled = et.infer(spec, observe=OBSERVE,
                          engine=et.InferenceCompilation(str(result.network_path), chunk_size=50),
                          num_traces=200, seed=3, executor=pool)
    np.testing.assert_allclose(serial.log_weights, pooled.log_weights, rtol=1e-6, atol=1e-6)


def test_unknown_addresses_fall_back_to_the_prior_and_are_counted(tmp_path):
    sim = models.make_gaussian()
    untrained = ProposalNetwork.for_simulator(sim, lstm_dim=8, embedding_dim=4)
    post = et.infer(sim, observe=OBSERVE, engine=et.InferenceCompilation(untrained),
                    num_traces=100, seed=0)
    assert post.metadata["ic"]["prior_fallbacks"] == 100
    [(address, count)] = post.metadata["ic"]["unknown_addresses"].items()
    assert address.endswith("__Normal__1") and count == 100
    prior = et.infer(sim, observe=OBSERVE, engine="importance", num_traces=100, seed=0)
    np.testing.assert_allclose(post.log_weights, prior.log_weights)
    # network-guided SMC counts its guide's prior draws (start and independence moves) alike
    guided = et.infer(sim, observe=OBSERVE, engine=et.NetworkGuidedSMC(untrained),
                      num_traces=32, seed=0)
    [(address, count)] = guided.metadata["ic"]["unknown_addresses"].items()
    assert address.endswith("__Normal__1") and count == guided.metadata["ic"]["prior_fallbacks"]
    assert count >= 32
    assert "never saw in training" in guided.metadata["summary"]["warnings"]["prior_fallbacks"]
    plain = et.infer(sim, observe=OBSERVE, engine="smc", num_traces=32, seed=0)
    assert "ic" not in plain.metadata and "guide_unknown_addresses" not in plain.metadata


def test_network_for_another_simulator_is_refused(trained, tmp_path):
    result, _ = trained
    other = et.PythonSimulator(models.gaussian_unknown_mean, name="not_gaussian")
    with pytest.raises(EtalumisError, match="trained for simulator 'gaussian'"):
        et.infer(other, observe=OBSERVE, engine="ic", network=result.network_path,
                 num_traces=10, seed=0)
    with pytest.raises(ObservationError, match="obs1"):
        et.infer(models.make_gaussian(), observe={"obs0": 8.0}, engine="ic",
                 network=result.network_path, num_traces=10, seed=0)


def test_network_named_inside_a_package(trained, tmp_path, monkeypatch):
    """``pkg://PACKAGE/PATH`` names a network shipped inside an installed package; a missing
    package or file is a one-line error that says which."""
    result, _ = trained
    package = tmp_path / "shipped_nets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.pt").write_bytes(open(result.network_path, "rb").read())
    monkeypatch.syspath_prepend(str(tmp_path))
    post = et.infer(models.make_gaussian(), observe=OBSERVE, engine="ic",
                    network="pkg://shipped_nets/net.pt", num_traces=20, seed=0)
    direct = et.infer(models.make_gaussian(), observe=OBSERVE, engine="ic",
                      network=result.network_path, num_traces=20, seed=0)
    np.testing.assert_array_equal(post.log_weights, direct.log_weights)
    with pytest.raises(FileNotFoundError, match="no installed package 'no_such_package'"):
        et.InferenceCompilation("pkg://no_such_package/net.pt")
    with pytest.raises(FileNotFoundError, match="pkg://shipped_nets/other.pt: no such network"):
        et.InferenceCompilation("pkg://shipped_nets/other.pt")


def branching():
    """Every kind of site the proposal density has to account for: a categorical, a real
    value, an uncontrolled sample, a count, and a loop whose later instances the network
    below never met (they fall back to the prior)."""
    k = et.sample(et.Categorical([0.3, 0.7]), name="k")
    total = et.sample(et.Normal(0.0, 1.0), name="x")
    total += et.sample(et.Normal(0.0, 0.1), control=False, name="noise")
    for _ in range(min(et.sample(et.Poisson(1.0 + 2 * k), name="n"), 6)):
        total += et.sample(et.Uniform(-1.0, 1.0))
    et.observe(et.Normal(total, 1.0), name="y")


def _untrained_controller(model, prior_traces: int, known, y: float):
    """``(simulator, prior controller, prior traces, IC controller observing y)``: the IC
    controller's untrained network has layers for the addresses of the prior traces that
    ``known`` picks."""
    from etalumis_core.engines.ic import ICController

    sim = et.PythonSimulator(model, name=model.__name__, observations={"y": ()})
    torch.manual_seed(0)
    network = ProposalNetwork.for_simulator(sim, embedding_dim=8, lstm_dim=16)
    prior = et.Controller(np.random.default_rng(0), sample_missing_observations=True)
    traces = [et.run_trace(sim, prior) for _ in range(prior_traces)]
    network.prescan(t for t in traces if known(t))
    return sim, prior, traces, ICController(np.random.default_rng(1), {"y": y}, network)


def test_score_is_the_log_proposal_density_the_controller_records():
    sim, prior, _, controller = _untrained_controller(
        branching, 20, lambda t: len(t.controlled_addresses) <= 4, 1.5)   # one loop pass
    differs = False
    for _ in range(40):
        trace = et.run_trace(sim, controller)
        controlled = [v for v in trace.variables if v.kind == "sample" and v.control]
        recorded = sum(v.log_proposal if v.log_proposal is not None else v.log_prob
                       for v in controlled)
        assert abs(controller.score(trace) - recorded) < 1e-5
        differs = differs or abs(recorded - sum(v.log_prob for v in controlled)) > 1e-3
        assert any(not v.control for v in trace.samples())   # the uncontrolled one is left out
    assert controller.fallbacks > 0 and differs
    # A trace the network did not draw is scored too: the density it would have drawn it with.
    trace = et.run_trace(sim, prior)
    assert math.isfinite(controller.score(trace))


def _replayed_score(controller, trace) -> float:
    """log q of a trace by replaying the controller's proposals one step at a time."""
    network = controller.network
    state = network.initial_state(controller._embedding)
    total = 0.0
    with torch.inference_mode():
        for v in trace.variables:
            if v.kind != "sample" or not v.control:
                continue
            proposal = network.propose(state, v.address, v.distribution,
                                       tuple(v.distribution.batch_shape))
            if proposal is None:
                network.skip(state)
                total += v.log_prob
                continue
            network.observe_value(state, v.value)
            total += float(np.sum(proposal.log_prob(v.value)))
    return total


def every_site():
    """A site of each head family, an array-valued one, a categorical whose prior rules out
    a value (the proposal masks it), an address met once (unknown to the network below) in
    the middle of the trace, and an uncontrolled sample."""
    k = et.sample(et.Categorical([0.2, 0.0, 0.5, 0.3]), name="k")
    x = et.sample(et.Normal(np.zeros(3), np.ones(3)), name="x")
    if k == 2:
        et.sample(et.Normal(0.0, 1.0), name="rare")
    u = et.sample(et.Uniform(-1.0, 2.0), name="u")
    g = et.sample(et.Gamma(2.0, 1.0), name="g")
    n = et.sample(et.Poisson(3.0), name="n")
    b = et.sample(et.Binomial(4, 0.5), name="b")
    noise = et.sample(et.Normal(0.0, 0.1), control=False, name="noise")
    et.observe(et.Normal(float(np.sum(x)) + u + g + n + b + noise, 1.0), name="y")


def test_batched_score_equals_the_step_by_step_replay_and_the_recorded_log_q():
    sim, _, traces, controller = _untrained_controller(
        every_site, 40, lambda t: not any(v.name == "rare" for v in t.variables), 2.0)
    with torch.no_grad():   # away from the near-prior initialisation
        for p in controller.network.heads.parameters():
            p.add_(0.3 * torch.randn_like(p))
    scored = [et.run_trace(sim, controller) for _ in range(30)] + traces[:10]
    assert controller.fallbacks > 0
    recorded_checked = 0
    for trace in scored:
        batched = controller.score(trace)
        assert batched == pytest.approx(_replayed_score(controller, trace), rel=1e-6, abs=1e-9)
        controlled = [v for v in trace.variables if v.kind == "sample" and v.control]
        if all(v.log_proposal is not None or v.name == "rare" for v in controlled):
            recorded = sum(v.log_prob if v.log_proposal is None else v.log_proposal
                           for v in controlled)
            assert batched == pytest.approx(recorded, rel=1e-6, abs=1e-9)
            recorded_checked += 1
    assert recorded_checked == 30
