"""Models served over PPX for the tests: ``python served_models.py MODEL ADDRESS [MAX_TRACES]``.

Faults are injected by environment variables, once (a marker file records that the fault
happened, so that a restarted simulator behaves):

* ``PPX_FAULT`` = ``kill`` (SIGKILL itself), ``sleep`` (stall forever), ``stall`` (stall for
  ``PPX_FAULT_SECONDS`` then go on), ``garbage`` (send bytes that are no flatbuffer),
  ``reset`` (send Reset), ``exit`` (exit with code 3) -- mid-trace, before the second observe;
* ``PPX_FAULT_TRACE``: the (1-based) trace of this process at which to fail (default 2);
* ``PPX_FAULT_MARKER``: the marker file.
``PPX_AFTER_FAULT=exit``: a process started after the fault exits at once with code 4.
``PPX_SESSION_TIMEOUT`` sets the server's ``session_timeout`` (seconds).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time

import numpy as np

import etalumis_core as et
from etalumis_core import runtime
from etalumis_core.ppx import serve, wire

_count = 0


def _maybe_fail() -> None:
    fault = os.environ.get("PPX_FAULT")
    if not fault:
        return
    marker = os.environ["PPX_FAULT_MARKER"]
    if _count != int(os.environ.get("PPX_FAULT_TRACE", "2")) or os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(fault)
    handler = runtime._state.handlers[-1]  # the served trace's handler
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "exit":
        os._exit(3)
    elif fault == "sleep":
        time.sleep(3600)
    elif fault == "stall":
        time.sleep(float(os.environ.get("PPX_FAULT_SECONDS", "3")))
    elif fault == "garbage":
        handler._send(b"\x07this is not a flatbuffer at all")
        time.sleep(3600)
    elif fault == "reset":
        handler._send(wire.RESET)
        time.sleep(3600)


def gaussian() -> float:
    """Gaussian with unknown mean: posterior given obs0=8, obs1=9 is Normal(7.25, 0.912871)."""
    global _count
    _count += 1
    mu = et.sample(et.Normal(1.0, math.sqrt(5.0)), name="mu")
    et.observe(et.Normal(mu, math.sqrt(2.0)), name="obs0")
    _maybe_fail()
    et.observe(et.Normal(mu, math.sqrt(2.0)), name="obs1")
    return mu


# Every PPX distribution type, scalar and batched, plus tags and a loop at one call site.
ALL_DISTRIBUTIONS = [
    ("normal", lambda: et.Normal(0.5, 2.0)),
    ("normal_b", lambda: et.Normal(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 2.0]))),
    ("uniform", lambda: et.Uniform(-1.0, 3.0)),
    ("uniform_b", lambda: et.Uniform(np.zeros((2, 2)), np.full((2, 2), 4.0))),
    ("categorical", lambda: et.Categorical(np.array([0.1, 0.2, 0.7]))),
    ("categorical_b", lambda: et.Categorical(np.array([[0.5, 0.5], [0.9, 0.1]]))),
    ("poisson", lambda: et.Poisson(3.5)),
    ("poisson_b", lambda: et.Poisson(np.array([1.0, 10.0]))),
    ("bernoulli", lambda: et.Bernoulli(0.3)),
    ("bernoulli_b", lambda: et.Bernoulli(np.array([0.2, 0.8, 0.5]))),
    ("beta", lambda: et.Beta(2.0, 3.0)),
    ("exponential", lambda: et.Exponential(1.5)),
    ("gamma", lambda: et.Gamma(2.0, 0.5)),
    ("lognormal", lambda: et.LogNormal(0.0, 0.5)),
    ("binomial", lambda: et.Binomial(10.0, 0.3)),
    ("binomial_b", lambda: et.Binomial(np.array([5.0, 20.0]), np.array([0.5, 0.1]))),
    ("weibull", lambda: et.Weibull(1.0, 1.5)),
]


def all_distributions() -> np.ndarray:
    total = 0.0
    for name, make in ALL_DISTRIBUTIONS:
        value = et.sample(make(), name=name)
        # The simulator must see exactly the type a forward run gives.
        forward = make().sample(np.random.default_rng(0))
        assert type(value) is type(forward), (name, type(value), type(forward))
        if isinstance(value, np.ndarray):
            assert value.shape == forward.shape and value.dtype == forward.dtype, name
        total += float(np.sum(value))
    for i in range(3):
        total += et.sample(et.Normal(total, 1.0), control=(i != 1))
    et.tag(total, name="total")
    et.tag(np.arange(4.0).reshape(2, 2), name="matrix")
    et.observe(et.Normal(total, 1.0), name="y")
    et.observe(et.Poisson(4.0), value=3, name="fixed")
    return np.array([total, 1.0])


def with_factor() -> float:
    x = et.sample(et.Normal(0.0, 1.0), name="x")
    et.factor(-x * x)
    return x


def endless() -> float:
    """A rejection loop that never accepts (its proposal cannot reach the target)."""
    et.observe(et.Normal(0.0, 1.0), value=0.5, name="y")
    while True:
        x = et.sample(et.Uniform(0.0, 1.0), name="x")
        if x > 2.0:
            return x
        et.tag(x, name="rejected")


def suffixes() -> float:
    """Every PPX distribution type, and categoricals of two sizes, all at one base address: the
    address suffixes and instance counters alone tell them apart."""
    for k in (3, 4, 3, 4, 3):
        et.sample(et.Categorical(np.full(k, 1.0 / k)), address="site")
    for _, make in ALL_DISTRIBUTIONS:
        et.sample(make(), address="site")
    et.observe(et.Normal(0.0, 1.0), value=0.5, name="y", address="site")
    et.observe(et.Categorical(np.full(5, 0.2)), value=1, name="z", address="site")
    return 0.0


MODELS = {"gaussian": gaussian, "suffixes": suffixes, "all_distributions": all_distributions,
          "with_factor": with_factor, "endless": endless}


def simulator(model: str) -> et.PythonSimulator:
    observations = {"gaussian": {"obs0": (), "obs1": ()}, "all_distributions": {"y": ()}}
    return et.PythonSimulator(MODELS[model], name=model, observations=observations.get(model, {}))


if __name__ == "__main__":
    if os.environ.get("PPX_AFTER_FAULT") == "exit" and os.path.exists(os.environ["PPX_FAULT_MARKER"]):
        sys.exit(4)  # a restart after the fault fails too (its error must not hide the fault)
    model, address = sys.argv[1], sys.argv[2]
    max_traces = int(sys.argv[3]) if len(sys.argv) > 3 else None
    serve(simulator(model), address, max_traces=max_traces,
          session_timeout=float(os.environ.get("PPX_SESSION_TIMEOUT", "30")))
