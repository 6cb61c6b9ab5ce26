"""Addresses, traces and the controller."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.controller import Controller


def helper(scale):
    return et.sample(et.Normal(0.0, scale), name="h")


def looped():
    xs = [et.sample(et.Normal(0.0, 1.0)) for _ in range(2)]
    for _ in range(3):
        xs.append(et.sample(et.Uniform(0.0, 1.0)))
    xs.append(helper(1.0))
    xs.append(helper(2.0))
    xs.append(et.sample(et.Poisson(3.0), address="explicit"))
    et.observe(et.Normal(sum(xs), 1.0), name="y")
    et.tag(len(xs), name="count")
    return xs


def trace_of(fn, seed=0, **obs):
    return et.run_trace(et.PythonSimulator(fn), Controller(np.random.default_rng(seed), obs))


def test_addresses_follow_the_documented_scheme():
    trace = trace_of(looped, y=1.0)
    addresses = [v.address for v in trace.variables]
    assert addresses == [
        "looped+1__Normal__1", "looped+1__Normal__2",
        "looped+3__Uniform__1", "looped+3__Uniform__2", "looped+3__Uniform__3",
        "looped+4/helper+1__Normal__1", "looped+5/helper+1__Normal__1",
        "explicit__Poisson__1", "looped+7__Normal__1", "looped+8__tag__1",
    ]
    assert trace.trace_type == tuple(addresses[:8])
    assert [v.kind for v in trace.variables][-2:] == ["observe", "tag"]


def test_trace_records_log_probabilities_and_flags():
    trace = trace_of(looped, y=1.0)
    samples = trace.samples()
    assert all(v.control and not v.observed for v in samples)
    assert trace.log_prior == pytest.approx(sum(v.distribution.log_prob(v.value) for v in samples))
    obs = trace.observations()[0]
    assert obs.observed and obs.value == 1.0
    assert trace.log_likelihood == pytest.approx(obs.distribution.log_prob(1.0))
    assert trace.log_weight == pytest.approx(trace.log_likelihood)
    assert trace.named("count").value == 8
    with pytest.raises(KeyError, match="count"):
        trace.named("nope")


def test_trace_type_hash_is_stable_across_processes():
    here = trace_of(looped, y=1.0)
    code = textwrap.dedent(f"""
        import importlib.util, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("t", {__file__!r})
        t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
        trace = t.trace_of(t.looped, y=1.0)
        print(trace.trace_type_hash)
        print("|".join(v.address for v in trace.variables))
        print(repr(trace.log_weight))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    hash_, addresses, log_weight = out.stdout.split("\n")[:3]
    assert hash_ == here.trace_type_hash
    assert addresses == "|".join(v.address for v in here.variables)
    assert float(log_weight) == here.log_weight  # same seed, same trace, bit for bit


def test_forward_run_outside_any_engine():
    et.seed_forward(3)
    a = looped()
    et.seed_forward(3)
    assert looped() == a
    assert len(a) == 8


def test_uncontrolled_samples_are_recorded_but_not_part_of_the_trace_type():
    def model():
        x = et.sample(et.Normal(np.zeros(3), 1.0), control=False)
        y = et.sample(et.Normal(0.0, 1.0), name="y")
        return float(np.sum(x)) + y

    trace = trace_of(model)
    assert len(trace.samples()) == 2
    assert len(trace.trace_type) == 1
    assert trace.log_prior == pytest.approx(sum(v.log_prob for v in trace.samples()))
