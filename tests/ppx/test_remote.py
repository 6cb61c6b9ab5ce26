"""An engine drives etalumis-served Python simulators in other processes over ipc:// and tcp://."""

from __future__ import annotations

import math

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.errors import ObservationError, SimulatorProtocolError
from etalumis_core.ppx import PPXSimulator, free_ipc_address, free_tcp_address
from etalumis_core.simulator import run_trace

from .conftest import served_command, served_env
from .served_models import simulator as local_simulator

OBS = {"obs0": 8.0, "obs1": 9.0}


def _same_trace(a: et.Trace, b: et.Trace) -> None:
    assert [(v.kind, v.address, v.name, v.control) for v in a.variables] == \
        [(v.kind, v.address, v.name, v.control) for v in b.variables]
    for va, vb in zip(a.variables, b.variables):
        assert np.array_equal(np.asarray(va.value), np.asarray(vb.value)), va.address
        assert va.log_prob == vb.log_prob, va.address
    assert (a.log_prior, a.log_likelihood, a.log_weight) == (b.log_prior, b.log_likelihood, b.log_weight)
    assert np.array_equal(np.asarray(a.result), np.asarray(b.result))


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_served_traces_equal_in_process_traces(transport: str) -> None:
    with PPXSimulator(command=served_command("gaussian"), env=served_env(), transport=transport,
                      timeout=10) as remote:
        local = local_simulator("gaussian")
        c_remote = et.Controller(np.random.default_rng(0), OBS)
        c_local = et.Controller(np.random.default_rng(0), OBS)
        for _ in range(200):
            _same_trace(run_trace(remote, c_remote, retries=0), run_trace(local, c_local))
        assert remote.name == "gaussian" and remote.system_name == "etalumis"
        assert remote.address.startswith(f"{transport}://")
        assert remote.launches == 1


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_connect_to_running_server(serve_process, transport: str) -> None:
    address = free_ipc_address() if transport == "ipc" else free_tcp_address()
    serve_process("gaussian", address)
    with PPXSimulator(address, timeout=10, startup_timeout=30) as remote:
        c_remote = et.Controller(np.random.default_rng(5), OBS)
        c_local = et.Controller(np.random.default_rng(5), OBS)
        local = local_simulator("gaussian")
        for _ in range(20):
            _same_trace(run_trace(remote, c_remote), run_trace(local, c_local))


def test_every_distribution_type_round_trips() -> None:
    with PPXSimulator(command=served_command("all_distributions"), env=served_env(),
                      timeout=10) as remote:
        local = local_simulator("all_distributions")
        for seed in range(5):
            a = run_trace(remote, et.Controller(np.random.default_rng(seed), {"y": 2.0}))
            b = run_trace(local, et.Controller(np.random.default_rng(seed), {"y": 2.0}))
            _same_trace(a, b)
            names = {v.distribution.name for v in a.variables if v.distribution is not None}
            assert names >= {"Normal", "Uniform", "Categorical", "Poisson", "Bernoulli", "Beta",
                             "Exponential", "Gamma", "LogNormal", "Binomial", "Weibull"}
            assert a.named("matrix").value.shape == (2, 2)
            assert a.named("fixed").value == 3.0


def test_controller_error_keeps_the_simulator_in_step() -> None:
    with PPXSimulator(command=served_command("gaussian"), env=served_env(), timeout=10) as remote:
        with pytest.raises(ObservationError, match="obs1"):
            run_trace(remote, et.Controller(np.random.default_rng(0), {"obs0": 8.0}), retries=2)
        trace = run_trace(remote, et.Controller(np.random.default_rng(0), OBS))
        expected = run_trace(local_simulator("gaussian"), et.Controller(np.random.default_rng(0), OBS))
        _same_trace(trace, expected)
        assert remote.launches == 1  # finished the abandoned trace instead of restarting


def test_factor_is_not_expressible_and_fails_cleanly() -> None:
    with PPXSimulator(command=served_command("with_factor"), env=served_env(), timeout=10) as remote:
        with pytest.raises(SimulatorProtocolError, match="Reset"):
            run_trace(remote, et.Controller(np.random.default_rng(0)), retries=0)


def test_importance_sampling_posterior_over_ppx() -> None:
    with PPXSimulator(command=served_command("gaussian"), env=served_env(), timeout=10) as remote:
        post = et.infer(remote, observe=OBS, engine="importance", num_traces=4000, seed=1,
                        progress=False)
    local = et.infer(local_simulator("gaussian"), observe=OBS, engine="importance",
                     num_traces=4000, seed=1, progress=False)
    mu = post.marginal("mu")
    # Bit for bit the in-process posterior ...
    assert np.array_equal(mu.values, local.marginal("mu").values)
    assert np.array_equal(mu.weights, local.marginal("mu").weights)
    # ... and close to the exact posterior Normal(7.25, 0.912871), within ESS-derived errors.
    ess = post.ess
    assert ess > 20
    assert abs(mu.mean - 7.25) < 4 * 0.912871 / math.sqrt(ess)
    assert abs(mu.stddev - 0.912871) < 4 * 0.912871 / math.sqrt(2 * ess)


def test_address_suffixes_and_instances_as_pyprob_writes_them() -> None:
    """Categoricals of different sizes at one call site get their own addresses; instances
    count per base and suffix (test_pyprob.py checks the same list against pyprob itself)."""
    with PPXSimulator(command=served_command("suffixes"), env=served_env(), timeout=10) as remote:
        trace = run_trace(remote, et.Controller(np.random.default_rng(0)))
    addresses = [v.address for v in trace.variables]
    assert addresses[:5] == ["site__Categorical(len_probs:3)__1", "site__Categorical(len_probs:4)__1",
                             "site__Categorical(len_probs:3)__2", "site__Categorical(len_probs:4)__2",
                             "site__Categorical(len_probs:3)__3"]
    assert addresses[5:9] == ["site__Normal__1", "site__Normal__2", "site__Uniform__1",
                              "site__Uniform__2"]
    assert addresses[-2:] == ["site__Normal__3", "site__Categorical(len_probs:5)__1"]
    assert len(set(addresses)) == len(addresses)
