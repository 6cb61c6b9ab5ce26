"""Pythia 8 in the engine's process (ctypes) against the PPX front end: the same seed gives the
same trace bit for bit; errors raised in a callback come out as themselves and leave Pythia
ready; a pickled simulator (an executor worker's) builds its own Pythia."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from etalumis_core import (ConfigError, Controller, ProcessPoolExecutor, TraceTooLongError, infer,
                           simulate)
from etalumis_core.simulator import run_trace, run_traces
from etalumis_pythia8_adapter import Pythia8TauInProcess, Pythia8TauSimulator, make_simulator

#: A prior trace (seed of ``simulate``) of 19,484 random numbers (see test_pythia8).
LONG_LOOP_SEED = 21
#: SMC particles for the planted event of the command-line test (the true mode comes first).
PLANTED_PARTICLES = 30


@pytest.fixture(scope="module")
def inprocess(front_end):
    with Pythia8TauInProcess(front_end) as s:
        yield s


def _bits(value) -> bytes:
    return np.asarray(value, dtype=np.float64).tobytes() if value is not None else b"none"


def assert_same_trace(a, b) -> None:
    """Same addresses in the same order, same names, distributions, values, log densities,
    tags, result: bit for bit."""
    assert [v.address for v in a.variables] == [v.address for v in b.variables]
    for va, vb in zip(a.variables, b.variables):
        assert (va.kind, va.name, va.control) == (vb.kind, vb.name, vb.control), va.address
        assert _bits(va.value) == _bits(vb.value), va.address
        assert va.log_prob == vb.log_prob, va.address
        if va.distribution is not None:
            pa, pb = va.distribution.params(), vb.distribution.params()
            assert va.distribution.name == vb.distribution.name
            assert {k: _bits(v) for k, v in pa.items()} == {k: _bits(v) for k, v in pb.items()}
    assert (a.log_prior, a.log_likelihood, a.log_weight) == (b.log_prior, b.log_likelihood,
                                                             b.log_weight)
    for key in ("calorimeter", "calorimeter_expected"):
        assert _bits(a.result[key]) == _bits(b.result[key]), key


def test_same_seed_same_trace_in_process_and_over_ppx(front_end):
    # Fresh simulators with dictionaries in memory: the same traces give the same compact ids.
    with Pythia8TauSimulator(front_end, timeout=30.0) as ppx, \
            Pythia8TauInProcess(front_end) as local:
        for seed in (0, 1, 2, 11, 15):
            assert_same_trace(simulate(ppx, seed=seed), simulate(local, seed=seed))
        # A run of prior traces with one controller each, the observation drawn by the engine.
        over_ppx = list(run_traces(ppx, Controller(np.random.default_rng(7),
                                                   sample_missing_observations=True), 8))
        in_process = list(run_traces(local, Controller(np.random.default_rng(7),
                                                       sample_missing_observations=True), 8))
        for a, b in zip(over_ppx, in_process):
            assert_same_trace(a, b)
        # Conditioned on an observation: the same likelihood, bit for bit.
        counts = over_ppx[0].result["calorimeter"]
        for seed in (3, 4):
            a = run_trace(ppx, Controller(np.random.default_rng(seed), {"calorimeter": counts}))
            b = run_trace(local, Controller(np.random.default_rng(seed), {"calorimeter": counts}))
            assert_same_trace(a, b)
            assert np.isfinite(b.log_likelihood)
        assert ppx.addresses.entries() == local.addresses.entries()
        assert len(local.addresses) > 10


def test_in_process_addresses_are_pythia_call_stacks(inprocess):
    trace = simulate(inprocess, seed=3)
    samples = [v for v in trace.variables if v.kind == "sample"]
    assert [v.name for v in samples[:3]] == ["px", "py", "pz"]
    pythia = samples[3:]
    assert len(pythia) == int(trace.values_by_name()["random_numbers"]) > 10
    longs = {inprocess.addresses.long(v.address.split("__")[0]) for v in pythia}
    for long in longs:
        # Only Pythia's frames: nothing of the library, of ctypes or of Python.
        assert long.startswith("Pythia8::Pythia::next+0x")
        assert all(frame.startswith("Pythia8::") for frame in long.split(";"))
    assert any("Pythia8::TauDecays::decay+0x" in a for a in longs)


class _StopAt(Controller):
    """A controller that raises ``error`` at the ``n``-th sample of a trace."""

    def __init__(self, seed: int, n: int, error: BaseException) -> None:
        super().__init__(np.random.default_rng(seed), sample_missing_observations=True)
        self.n, self.error, self.samples = n, error, 0

    def sample(self, base, distribution, name, control):
        self.samples += 1
        if self.samples == self.n:
            raise self.error
        return super().sample(base, distribution, name, control)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("error", [_Stop("the engine broke the trace off"), KeyboardInterrupt()])
def test_an_exception_in_a_callback_comes_out_and_pythia_runs_on(inprocess, error):
    # seed 0 draws 454 random numbers: the 50th sample is deep inside Pythia's decay.
    with pytest.raises(type(error)) as raised:
        run_trace(inprocess, _StopAt(0, 50, error))
    assert raised.value is error
    # The next trace is the one an undisturbed simulator gives.
    after = simulate(inprocess, seed=0)
    with Pythia8TauInProcess(inprocess.front_end) as fresh:
        assert_same_trace(after, simulate(fresh, seed=0))


def test_a_trace_too_long_stops_inside_pythias_loop(inprocess):
    inprocess.max_choices = 1_000
    try:
        with pytest.raises(TraceTooLongError):
            simulate(inprocess, seed=LONG_LOOP_SEED)
    finally:
        del inprocess.max_choices  # the class default again
    assert int(simulate(inprocess, seed=LONG_LOOP_SEED).values_by_name()["random_numbers"]) > 10_000


def test_a_pickled_simulator_builds_its_own_pythia(inprocess):
    before = simulate(inprocess, seed=5)
    copy = pickle.loads(pickle.dumps(inprocess))
    assert copy._native is None and inprocess._native is not None
    with copy:
        assert_same_trace(simulate(copy, seed=5), before)


def test_importance_on_the_process_executor_equals_serial_over_ppx(front_end, tmp_path):
    # One dictionary file for every process, as a study shares it: ids agree across workers.
    dictionary = tmp_path / "pythia8_addresses.jsonl"
    with Pythia8TauSimulator(front_end, address_dictionary=dictionary) as ppx:
        observed = simulate(ppx, seed=1).result["calorimeter"]
        serial = infer(ppx, {"calorimeter": observed}, num_traces=6, seed=4, progress=False)
    local = Pythia8TauInProcess(front_end, address_dictionary=dictionary)
    pool = ProcessPoolExecutor(num_workers=2)
    try:
        pooled = infer(local, {"calorimeter": observed}, num_traces=6, seed=4, executor=pool,
                       progress=False)
    finally:
        pool.close()
        local.close()
    assert pooled.log_weights.tobytes() == serial.log_weights.tobytes()


def test_transport_chooses_the_link(front_end):
    sim = make_simulator(transport="inprocess", front_end=front_end, timeout=5.0)
    assert isinstance(sim, Pythia8TauInProcess)
    sim.close()
    with make_simulator(transport="ipc", front_end=front_end) as ppx:
        assert isinstance(ppx, Pythia8TauSimulator)
    with pytest.raises(ConfigError, match="transport=inprocess"):
        make_simulator(transport="inprocess", front_end=front_end, address="ipc:///tmp/x")


def test_a_missing_library_is_one_clear_error(tmp_path, front_end):
    fake = tmp_path / "pythia8_tau_ppx"
    fake.write_bytes(front_end.read_bytes())
    with pytest.raises(ConfigError, match="make pythia8"):
        Pythia8TauInProcess(fake)


def test_a_setting_pythia_refuses_is_one_clear_error(front_end):
    with Pythia8TauInProcess(front_end, settings=["TauDecays:mode = banana"]) as sim:
        with pytest.raises(ConfigError, match="does not accept the setting 'TauDecays:mode"):
            simulate(sim, seed=0)


def test_pythia_reads_the_xmldoc_it_is_given_whatever_the_environment_says(front_end, monkeypatch):
    # Pythia's constructor prefers $PYTHIA8DATA (then a path compiled into the library, stale
    # once a build is moved) over its argument; the front end's xmldoc must win, in both links,
    # and the engine's environment must be left as it was.
    monkeypatch.setenv("PYTHIA8DATA", "/nonexistent/xmldoc")
    with Pythia8TauInProcess(front_end) as local, \
            Pythia8TauSimulator(front_end, timeout=30.0) as ppx:
        assert_same_trace(simulate(ppx, seed=3), simulate(local, seed=3))
    assert os.environ["PYTHIA8DATA"] == "/nonexistent/xmldoc"


def test_the_command_line_infers_a_planted_pi_pi0_event_and_writes_the_tau_report(front_end,
                                                                                   tmp_path):
    # `etalumis simulator=pythia8_tau` end to end on Pythia's own tau- -> pi- pi0 nu_tau
    # (truth seed 15), the default engine (SMC) with few particles, in process.
    command = [sys.executable, "-m", "etalumis_core.app.cli", "simulator=pythia8_tau",
               "truth_seed=15", f"num_traces={PLANTED_PARTICLES}", "executor=serial",
               "progress=false", "hydra.run.dir=run"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "tau_report.json").read_text())
    channel = report["channel"]
    assert channel["true_name"] == "nu_tau pi0 pi-" and channel["true_rank"] == 1
    assert channel["map_index"] == channel["true_index"]
    for plot in ("tau_channels.png", "tau_momentum.png"):
        assert (tmp_path / "run" / plot).stat().st_size > 0
