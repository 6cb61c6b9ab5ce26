"""The Sherpa adapter against a real C++ PPX process that behaves like Sherpa (tests/cpp):
launching and configuring it, compact addresses, observation and result decoding, inference on
planted channels, restarts after SIGKILL, several worker processes, the tau report."""

from __future__ import annotations

import gc
import inspect
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import etalumis_core as et
from etalumis_core.app.cli import searchpath_override
from etalumis_core.simulator import SimulatorSpec, run_trace
from etalumis_sherpa_adapter import AddressDictionary, SherpaSimulator, analysis, plugin

TIMEOUT = 10.0


def command(binary: Path, sigma0: float | None = None) -> list[str]:
    extra = ["--sigma0", str(sigma0)] if sigma0 is not None else []
    return [str(binary), *extra, "{address}"]


def make(binary: Path, sigma0: float | None = None, **params) -> SherpaSimulator:
    params.setdefault("timeout", TIMEOUT)
    params.setdefault("startup_timeout", TIMEOUT)
    return SherpaSimulator(command=command(binary, sigma0), **params)


def planted(sim: SherpaSimulator, accept, start: int = 0) -> et.Trace:
    """The first simulated event (seeds start, start+1, ...) that ``accept`` takes."""
    for seed in range(start, start + 500):
        trace = et.simulate(sim, seed=seed)
        if accept(trace.values_by_name()):
            return trace
    raise AssertionError("no such event in 500 draws")


def test_traces_carry_compact_addresses_names_and_the_calorimeter(sherpa_binary, possible_addresses,
                                                                  tmp_path) -> None:
    with make(sherpa_binary, address_dictionary=tmp_path / "a.jsonl") as sim:
        trace = et.simulate(sim, seed=3)
        d = sim.addresses
    samples = trace.samples()
    # The first three random choices are the tau momentum, then the 38-way channel.
    assert [v.name for v in samples[:4]] == ["px", "py", "pz", "channel"]
    assert [v.distribution.name for v in samples[:4]] == ["Uniform"] * 3 + ["Categorical"]
    assert np.allclose(samples[3].distribution.params()["probs"], analysis.CHANNEL_PROBS)
    assert all(v.name is None for v in samples[4:])
    # Compact addresses: a<id>:<innermost Sherpa frame>; the long form is in the dictionary.
    assert samples[0].address == "a0:Tau_Gun::GenerateMomentum__Uniform__1"
    assert samples[3].address == "a3:Hadron_Decay_Table::Select__Categorical(len_probs:38)__1"
    assert max(len(v.address) for v in trace.variables) < 60
    longs = {d.expand(v.address).rpartition("__")[0].rpartition("__")[0] for v in trace.variables}
    assert longs <= set(possible_addresses)
    assert min(len(a) for a in longs) > 500
    # The rejection loop repeats one base address: one dictionary entry, many instances.
    rambo = [v.address for v in samples if "Rambo::GenerateWeight" in v.address]
    assert len({a.partition("__")[0] for a in rambo}) == 1
    assert len(d) == len({v.address.partition("__")[0] for v in trace.variables})
    # The calorimeter: observed as (35, 35, 20) by name, and returned as the run result.
    (obs,) = trace.observations()
    assert obs.name == "calorimeter" and np.shape(obs.value) == (35, 35, 20)
    calorimeter = trace.result["calorimeter"]
    assert calorimeter.shape == (35, 35, 20)
    assert trace.named("e_calorimeter").value == pytest.approx(calorimeter.sum())
    assert sim.observations == {"calorimeter": (35, 35, 20)}


def test_command_line_run_card_environment_and_working_directory(sherpa_binary, tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "Run.dat").write_text("# a Sherpa-style run card\nMODEL_NAME = tau_decay_run\n"
                                     "SIGMA0: 0.25\n")
    with SherpaSimulator(command=[str(sherpa_binary), "-f", "{run_card}", "{address}"],
                         run_card="Run.dat", cwd=run_dir, env={"SHERPA_LIKE_BANNER": "hello from env"},
                         log_file="sherpa.log", timeout=TIMEOUT, startup_timeout=TIMEOUT) as sim:
        trace = et.simulate(sim, seed=0)
        assert sim.model_name == "tau_decay_run"   # the run card (found in cwd) was read
    (obs,) = trace.observations()
    empty = np.asarray(obs.distribution.params()["stddev"])[np.asarray(trace.result["calorimeter"]) == 0]
    assert np.allclose(empty, 0.25)                 # SIGMA0 from the run card
    assert "hello from env" in (run_dir / "sherpa.log").read_text()


def test_infers_a_planted_muon_channel_exactly(sherpa_binary) -> None:
    # A muon deposits nothing: every other channel is excluded, and the posterior is the
    # prior restricted to the muon channel (equal weights on every muon trace).
    with make(sherpa_binary) as sim:
        truth = planted(sim, lambda v: v["channel"] == 1)
        observed = truth.result["calorimeter"]
        assert not observed.any()
        post = et.infer(sim, observe={"calorimeter": observed}, engine=et.ImportanceSampling(),
                        num_traces=300, seed=1, progress=False)
    assert post.num_traces == 300
    probs = post.marginal("channel").probabilities()
    assert probs[1] == pytest.approx(1.0, abs=1e-12)   # others: below 1e-50
    n_muon = post.ess
    # Binomial count of muon traces among 300 prior draws: within 4 standard errors.
    p = analysis.CHANNEL_PROBS[1]
    assert abs(n_muon - 300 * p) < 4 * math.sqrt(300 * p * (1 - p))
    # Nothing constrains the momentum: its posterior is the uniform prior.
    for name, (low, high) in {"px": (-3, 3), "py": (-3, 3), "pz": (43, 47)}.items():
        m = post.marginal(name)
        se = (high - low) / math.sqrt(12) / math.sqrt(n_muon)
        assert abs(m.mean - (low + high) / 2) < 4 * se


def test_infers_a_planted_electron_channel(sherpa_binary, tmp_path) -> None:
    # A bright electron: a purely electromagnetic shower, unlike any hadronic channel.
    with make(sherpa_binary, sigma0=0.1) as sim:
        truth = planted(sim, lambda v: v["channel"] == 0 and v["visible_energy"] > 0.7 * v["e_tau"])
        post = et.infer(sim, observe={"calorimeter": truth.result["calorimeter"]},
                        engine=et.ImportanceSampling(), num_traces=600, seed=1, progress=False)
        probs = post.marginal("channel").probabilities()
        assert next(iter(probs)) == 0
        assert probs[0] > 0.5 > analysis.CHANNEL_PROBS[0]
        # The tau report, with Sherpa's own name for the visible energy.
        sim.variable_names = {"e_visible": "visible_energy"}
        summary = sim.report(post, truth, str(tmp_path))
    assert summary["channel"]["map_index"] == 0
    assert summary["channel"]["true_index"] == 0
    assert summary["headline"].startswith("most probable decay: tau- -> e- nu_e~ nu (posterior")
    assert summary["energies"]["e_visible"]["true"] == pytest.approx(truth.named("visible_energy").value)
    assert set(summary["momentum"]) == {"px", "py", "pz"}
    for plot in ("channels", "momentum", "calorimeter"):
        assert Path(summary["plots"][plot]).stat().st_size > 1000
    written = json.loads((tmp_path / "tau_summary.json").read_text())
    assert written["channel"]["map_name"] == analysis.CHANNEL_NAMES[0]


def test_a_fresh_process_reuses_the_dictionary_from_disk(sherpa_binary, tmp_path) -> None:
    path = tmp_path / "addresses.jsonl"
    with make(sherpa_binary, address_dictionary=path) as first:
        controller = et.Controller(np.random.default_rng(0), sample_missing_observations=True)
        before = [run_trace(first, controller) for _ in range(40)]
        entries = first.addresses.entries()
    with make(sherpa_binary, address_dictionary=path) as second:
        assert second.addresses.entries() == entries
        controller = et.Controller(np.random.default_rng(0), sample_missing_observations=True)
        after = [run_trace(second, controller) for _ in range(40)]
        # Same random stream, same addresses (same ids), nothing new in the dictionary.
        assert [[v.address for v in t.variables] for t in after] == \
            [[v.address for v in t.variables] for t in before]
        assert second.addresses.entries() == entries
        assert second.launches == 1


def test_memory_and_dictionary_do_not_grow_per_trace(sherpa_binary, possible_addresses) -> None:
    with make(sherpa_binary) as sim:
        controller = et.Controller(np.random.default_rng(5), sample_missing_observations=True)
        for _ in range(100):
            run_trace(sim, controller)
        tracemalloc.start()
        try:
            # Both snapshots hold one finished trace (the controller's last): compare like
            # with like.
            for _ in range(20):
                run_trace(sim, controller)
            gc.collect()
            start, size = tracemalloc.take_snapshot(), len(sim.addresses)
            for _ in range(300):
                run_trace(sim, controller)
            gc.collect()
            end = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        new_entries = len(sim.addresses) - size
        growth = sum(s.size_diff for s in end.compare_to(start, "filename"))
        # Only addresses never seen before (rare channels) add memory, about 2 kB each (the
        # dictionary entry, the PPX layer's decoded-message cache): nothing per trace.
        assert growth < 16_000 + 4_000 * new_entries, (growth, new_entries)
        assert {a for _, _, a in sim.addresses} <= set(possible_addresses)
        assert len(sim.addresses) <= len(possible_addresses)


class _KillMidTrace:
    """Passes messages to the controller, SIGKILLing the simulator at the 6th sample."""

    def __init__(self, controller, sim) -> None:
        self.controller, self.sim, self.samples = controller, sim, 0

    def sample(self, *args):
        self.samples += 1
        if self.samples == 6:
            self.sim.kill_count += 1
            self.sim.kill()
        return self.controller.sample(*args)

    def __getattr__(self, item):
        return getattr(self.controller, item)


class _KilledOnce(SherpaSimulator):
    kill_at = 37

    def run(self, controller):
        self.runs = getattr(self, "runs", 0) + 1
        self.kill_count = getattr(self, "kill_count", 0)
        if self.runs == self.kill_at:
            controller = _KillMidTrace(controller, self)
        return super().run(controller)


def test_a_simulator_killed_mid_run_is_restarted_and_no_trace_is_lost(sherpa_binary) -> None:
    observed = np.zeros((35, 35, 20))
    with _KilledOnce(command=command(sherpa_binary), timeout=TIMEOUT, startup_timeout=TIMEOUT) as sim:
        post = et.infer(sim, observe={"calorimeter": observed}, engine=et.ImportanceSampling(),
                        num_traces=120, seed=4, progress=False)
        assert sim.kill_count == 1
        assert sim.launches == 2
    with make(sherpa_binary) as undisturbed:
        expected = et.infer(undisturbed, observe={"calorimeter": observed},
                            engine=et.ImportanceSampling(), num_traces=120, seed=4, progress=False)
    assert post.num_traces == 120
    assert np.array_equal(post.log_weights, expected.log_weights)
    assert np.array_equal(post.marginal("px").values, expected.marginal("px").values)


def test_health_check_answers_and_restarts_a_dead_process(sherpa_binary) -> None:
    with make(sherpa_binary) as sim:
        first = sim.health_check()
        assert first["restarted"] and first["launches"] == 1
        assert first["model_name"] == "sherpa_like"
        again = sim.health_check()      # alive: a handshake, no relaunch
        assert not again["restarted"] and again["pid"] == first["pid"] and sim.launches == 1
        sim.kill()
        after = sim.health_check()
        assert after["restarted"] and after["pid"] != first["pid"] and sim.launches == 2
        run_trace(sim, et.Controller(np.random.default_rng(0), sample_missing_observations=True))


def test_worker_processes_each_hold_a_simulator_and_agree_on_ids(sherpa_binary, tmp_path) -> None:
    path = tmp_path / "addresses.jsonl"
    params = {"command": command(sherpa_binary), "address_dictionary": str(path),
              "timeout": TIMEOUT, "startup_timeout": 30.0}
    spec = SimulatorSpec(plugin.make_simulator, params, name="sherpa")
    observed = np.zeros((35, 35, 20))
    with et.ProcessPoolExecutor(num_workers=2) as pool:
        pooled = et.infer(spec, observe={"calorimeter": observed},
                          engine=et.ImportanceSampling(chunk_size=30), num_traces=120, seed=8,
                          executor=pool, progress=False)
    serial = et.infer(spec, observe={"calorimeter": observed},
                      engine=et.ImportanceSampling(chunk_size=30), num_traces=120, seed=8,
                      progress=False)
    assert pooled.num_traces == 120
    assert np.array_equal(pooled.log_weights, serial.log_weights)
    # One entry per distinct long address, ids 0..n-1, whichever worker met it first.
    d = AddressDictionary.load(path)
    ids = [i for i, _, _ in d]
    assert ids == list(range(len(d)))
    assert len({a for _, _, a in d}) == len(d)
    for key in pooled.columns:
        if key.startswith("a") and "__" in key:
            assert d.long(key)  # every trace address resolves to its long form


def test_registered_and_configured_through_hydra(sherpa_binary, tmp_path) -> None:
    plugins = et.load_plugins(load_entry_points=False, extra=[("sherpa", plugin)])
    assert "sherpa" in plugins.simulators.names()
    # simulator=sherpa through the plugin's Hydra search path, as the CLI composes it.
    with initialize_config_module(config_module="etalumis_core.conf", version_base="1.3"):
        composed = compose("infer", overrides=[
            "simulator=sherpa", searchpath_override(plugins),
            "simulator.params.run_card=MyRun.dat"])
    cfg = OmegaConf.to_container(composed.simulator, resolve=True)
    assert cfg["name"] == "sherpa" and cfg["params"]["run_card"] == "MyRun.dat"
    assert set(cfg["params"]) <= set(inspect.signature(SherpaSimulator).parameters)
    params = dict(cfg["params"])
    params.update(command=command(sherpa_binary), run_card=None, cwd=str(tmp_path),
                  address_dictionary=str(tmp_path / "addresses.jsonl"))
    sim = plugins.simulators.create("sherpa", **params)
    try:
        assert isinstance(sim, SherpaSimulator)
        trace = et.simulate(sim, seed=0)
        assert trace.named("channel").address.startswith("a3:")
        assert (tmp_path / "sherpa.log").exists()
    finally:
        sim.close()
