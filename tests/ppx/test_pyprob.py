"""pyprob 1.5.0's RemoteModel, as the engine, drives an etalumis-served simulator.

pyprob pins old dependencies (flatbuffers==2.0, termcolor==1.1.0), so it runs in its own virtual
environment, ``benchmarks/.venv-pyprob`` (``make pyprob-venv``); the test is skipped without it.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from etalumis_core.ppx import free_ipc_address

from .conftest import HERE, ROOT

PYPROB_PYTHON = ROOT / "benchmarks" / ".venv-pyprob" / "bin" / "python"


@pytest.fixture(scope="module")
def pyprob_python() -> str:
    if not PYPROB_PYTHON.exists():
        pytest.skip(f"pyprob's virtual environment {PYPROB_PYTHON.parent.parent} does not exist "
                    "(create it with `make pyprob-venv`)")
    return str(PYPROB_PYTHON)


def test_pyprob_engine_gets_the_posterior_of_a_served_simulator(pyprob_python: str,
                                                                  serve_process) -> None:
    address = free_ipc_address()
    serve_process("gaussian", address)
    proc = subprocess.run(
        [pyprob_python, str(HERE / "pyprob_driver.py"), address, "4000",
         json.dumps({"obs0": 8.0, "obs1": 9.0})],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # Addresses as pyprob records them: our base address plus pyprob's own suffix.
    assert summary["addresses"] == ["gaussian+4__Normal__1", "gaussian+5__Normal__1",
                                    "gaussian+7__Normal__1"]
    ess = summary["ess"]
    assert ess > 5
    # Exact posterior Normal(7.25, 0.912871); errors of a weighted estimate with this ESS.
    assert abs(summary["mean"] - 7.25) < 4 * 0.912871 / math.sqrt(ess)
    assert abs(summary["stddev"] - 0.912871) < 4 * 0.912871 / math.sqrt(2 * ess) + 0.1


def test_addresses_match_pyprob_for_every_distribution(pyprob_python: str, serve_process) -> None:
    """pyprob 1.5.0 and etalumis, each driving the same served simulator, record the same
    addresses: every PPX distribution type, and categoricals of two sizes at one call site."""
    import numpy as np

    import etalumis_core as et
    from etalumis_core.ppx import PPXSimulator
    from etalumis_core.simulator import run_trace

    ours, theirs = free_ipc_address(), free_ipc_address()
    serve_process("suffixes", ours)
    serve_process("suffixes", theirs)
    proc = subprocess.run([pyprob_python, str(HERE / "pyprob_driver.py"), theirs, "--addresses"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pyprob_addresses = json.loads(proc.stdout.strip().splitlines()[-1])
    with PPXSimulator(ours, timeout=10, startup_timeout=30) as sim:
        trace = run_trace(sim, et.Controller(np.random.default_rng(0)))
    assert [v.address for v in trace.variables] == pyprob_addresses
    assert pyprob_addresses[:5] == [
        "site__Categorical(len_probs:3)__1", "site__Categorical(len_probs:4)__1",
        "site__Categorical(len_probs:3)__2", "site__Categorical(len_probs:4)__2",
        "site__Categorical(len_probs:3)__3"]
    assert {a.split("__")[1] for a in pyprob_addresses} == {
        "Categorical(len_probs:3)", "Categorical(len_probs:4)", "Categorical(len_probs:2)",
        "Categorical(len_probs:5)", "Normal", "Uniform", "Poisson", "Bernoulli", "Beta",
        "Exponential", "Gamma", "LogNormal", "Binomial", "Weibull"}
