"""The real Pythia 8 under control over real sockets: reproducibility, addresses, the tagged
decay, the calorimeter port and its Poisson observation, the prior decay-mode fractions, and a
long rejection loop run, stored and trained on."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from etalumis_core import Controller, simulate
from etalumis_core.simulator import run_traces
from etalumis_pythia8_adapter import Pythia8TauSimulator

#: A prior trace (seed of ``simulate``) whose decay draws 19,484 random numbers, most of them in
#: one accept/reject loop (tau- -> pi0 pi0 pi- pi- pi+ nu_tau).
LONG_LOOP_SEED = 21


@pytest.fixture(scope="module")
def sim(front_end):
    with Pythia8TauSimulator(front_end, timeout=30.0) as s:
        yield s


def _samples(trace):
    return [v for v in trace.variables if v.kind == "sample"]


def test_same_seed_same_trace_bit_for_bit_in_another_process(sim, front_end):
    with Pythia8TauSimulator(front_end) as other:
        a, b = simulate(sim, seed=11), simulate(other, seed=11)
    assert other.pid is None and sim.pid is not None  # two processes, one closed
    assert [v.address for v in a.variables] == [v.address for v in b.variables]
    for va, vb in zip(a.variables, b.variables):
        assert np.asarray(va.value).tobytes() == np.asarray(vb.value).tobytes(), va.address
    assert a.log_weight == b.log_weight
    for key in ("calorimeter", "calorimeter_expected"):
        assert np.asarray(a.result[key]).tobytes() == np.asarray(b.result[key]).tobytes(), key


def test_momentum_first_named_choices_then_pythia_stack_addresses(sim):
    trace = simulate(sim, seed=3)
    samples = _samples(trace)
    assert [v.name for v in samples[:3]] == ["px", "py", "pz"]
    bounds = [(v.distribution.params()["low"], v.distribution.params()["high"]) for v in samples[:3]]
    assert np.allclose(bounds, [(-3, 3), (-3, 3), (43, 47)])
    pythia = samples[3:]  # the deposits are marginalised: every other choice is Pythia's
    assert len(pythia) == int(trace.values_by_name()["random_numbers"]) > 10
    for v in pythia:
        assert v.distribution.name == "Uniform" and v.control and 0.0 <= v.value < 1.0
        base = v.address.split("__")[0]
        long = sim.addresses.long(base)
        assert long.startswith("Pythia8::Pythia::next+0x")  # outermost first
        assert sim.addresses.alias(base) in long.replace("Pythia8::", "")
    longs = {sim.addresses.long(v.address.split("__")[0]) for v in pythia}
    assert any("Pythia8::TauDecays::decay+0x" in a for a in longs)


def test_addresses_identical_across_processes(front_end, tmp_path):
    def run(seeds, dictionary=None):
        with Pythia8TauSimulator(front_end, address_dictionary=dictionary) as s:
            traces = {k: [v.address for v in simulate(s, seed=k).variables] for k in seeds}
            return traces, s.addresses.entries()

    assert run([1, 2]) == run([1, 2])  # in memory: the same run gives the same ids
    # Through a shared file, a process that meets the addresses in another order agrees too.
    shared = tmp_path / "pythia8_addresses.jsonl"
    first, _ = run([1, 2], shared)
    second, entries = run([2, 1], shared)
    assert first == second
    assert len(entries) == len(run([1, 2])[1])


def test_decay_is_tagged_and_conserves_four_momentum(sim):
    channels = sim.channels
    for seed in range(5):
        v = simulate(sim, seed=seed).values_by_name()
        channel = int(v["channel"])
        assert 0 <= channel < len(channels)
        pdg = np.asarray(v["final_state_pdg"]).astype(int)
        p4 = np.asarray(v["final_state_p4"]).reshape(-1, 4)
        assert 16 in pdg  # the tau neutrino
        tau = [np.sqrt(v["px"] ** 2 + v["py"] ** 2 + v["pz"] ** 2 + 1.77686 ** 2), v["px"], v["py"], v["pz"]]
        assert np.allclose(p4.sum(axis=0), tau, atol=1e-6)
        assert v["n_neutrinos"] == np.isin(np.abs(pdg), (12, 14, 16)).sum()
        assert np.isclose(v["e_visible"] + v["e_invisible"], tau[0])


def test_calorimeter_port_equals_the_python_calorimeter(front_end):
    from etalumis_toy_tau_decay.calorimeter import Calorimeter
    from etalumis_toy_tau_decay.decay import Particle

    calorimeter = Calorimeter()
    showered = 0
    # A background far below every shower's rate leaves the front end's rates bare.
    with Pythia8TauSimulator(front_end, background=1e-300) as bare:
        for seed in range(16):
            trace = simulate(bare, seed=seed)
            v = trace.values_by_name()
            particles = [Particle(int(i), np.asarray(p, float)) for i, p in
                         zip(np.asarray(v["final_state_pdg"]),
                             np.asarray(v["final_state_p4"]).reshape(-1, 4))]
            expected = calorimeter.expected_counts(particles) + 1e-300
            observed = next(x for x in trace.variables if x.kind == "observe")
            assert observed.distribution.name == "Poisson"
            np.testing.assert_allclose(observed.distribution.params()["rate"], expected,
                                       rtol=1e-12, atol=0.0)
            np.testing.assert_allclose(trace.result["calorimeter_expected"], expected,
                                       rtol=1e-12, atol=0.0)
            assert np.isclose(v["e_calorimeter_expected"], calorimeter.expected_energy(particles))
            showered += sum(calorimeter.sampling_fraction(p.pdg) > 0 and p.visible
                            and calorimeter._geometry(p) is not None for p in particles)
    assert showered >= 16


def test_observation_is_poisson_deposit_counts_with_background(sim):
    from scipy import stats

    trace = simulate(sim, seed=0)  # tau- -> pi- pi- pi+ nu_tau: about 1,900 deposits expected
    assert not any(v.address.startswith("calorimeter") for v in _samples(trace))  # none drawn
    observed = next(x for x in trace.variables if x.kind == "observe")
    assert observed.name == "calorimeter" and observed.address.startswith("calorimeter__")
    rate = np.asarray(observed.distribution.params()["rate"])
    assert rate.shape == (35, 35, 20) and rate.min() >= 1e-4
    # Voxels no shower reaches hold the background alone.
    assert np.count_nonzero(np.isclose(rate, 1e-4, rtol=1e-9, atol=0.0)) > 1000
    np.testing.assert_array_equal(trace.result["calorimeter_expected"], rate)
    counts = np.asarray(trace.result["calorimeter"])
    np.testing.assert_array_equal(counts, observed.value)
    assert np.all(counts == np.round(counts)) and counts.sum() > 100
    assert np.isclose(trace.log_likelihood, stats.poisson.logpmf(counts, rate).sum(), rtol=1e-9)
    assert trace.values_by_name()["e_calorimeter"] == pytest.approx(0.005 * counts.sum())


def test_a_background_that_is_not_positive_is_one_clear_error(front_end):
    from etalumis_core import ConfigError

    with pytest.raises(ConfigError, match="background must be positive"):
        Pythia8TauSimulator(front_end, background=0.0)


def _chi_square(counts_a: np.ndarray, counts_b: np.ndarray, min_expected: float = 5.0):
    """Two-sample chi-square over channels, rare channels pooled; returns (statistic, dof)."""
    from scipy import stats

    na, nb = counts_a.sum(), counts_b.sum()
    pooled = (counts_a + counts_b) / (na + nb)
    rare = pooled * min(na, nb) < min_expected
    a = np.append(counts_a[~rare], counts_a[rare].sum())
    b = np.append(counts_b[~rare], counts_b[rare].sum())
    keep = (a + b) > 0
    table = np.vstack([a[keep], b[keep]])
    statistic, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return statistic, dof, p


def test_prior_decay_fractions_match_pythia_alone(sim):
    n_channels = len(sim.channels)
    controlled = np.zeros(n_channels, dtype=np.int64)
    controller = Controller(np.random.default_rng(2026), sample_missing_observations=True)
    for trace in run_traces(sim, controller, 200):
        controlled[int(trace.values_by_name()["channel"])] += 1
    alone = np.zeros(n_channels, dtype=np.int64)
    for k, count in sim.run_standalone(5_000, seed=7)["channels"].items():
        alone[int(k)] = count
    statistic, dof, p = _chi_square(controlled, alone)
    # Fixed seeds: the outcome is deterministic; a biased control would fail by a wide margin.
    assert p > 0.01, (statistic, dof, p)


def test_long_rejection_loop_runs(sim):
    trace = simulate(sim, seed=LONG_LOOP_SEED)
    assert int(trace.values_by_name()["random_numbers"]) > 10_000
    bases = [a.split("__")[0] for a in trace.controlled_addresses]
    assert max(bases.count(b) for b in set(bases)) > 5_000  # one call site inside a loop


@pytest.fixture(scope="module")
def long_dataset(sim, tmp_path_factory):
    from etalumis_core import generate_dataset

    # With seed 0 and one trace per shard, trace 4 draws 11,039 random numbers.
    return generate_dataset(sim, tmp_path_factory.mktemp("long_dataset"), num_traces=5, seed=0,
                            chunk_size=1, progress=False)


def test_dataset_stores_a_long_trace(long_dataset):
    lengths = [len(r.samples) for r in long_dataset.records(range(5))]
    assert max(lengths) == lengths[4] > 10_000


# Two training steps on the dataset in a fresh process, so that the peak resident memory
# measured is this training's alone.
TRAIN_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from etalumis_core.data import TraceDataset
    from etalumis_core.nn import ProposalNetwork, Trainer

    dataset = TraceDataset(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    net = ProposalNetwork.for_dataset(
        dataset, embedding_dim=8, lstm_dim=16, address_embedding_dim=4, sample_embedding_dim=4,
        head_hidden_dim=16, mixture_components=2, embedding_options={"hidden_dims": [16]})
    result = Trainer(num_threads=1, progress=False, plot=False).train(
        net, dataset, sys.argv[2], steps=2, batch_size=5)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"growth_mb": growth / 2**10, "losses": result.losses,
                      "layers": [a for a, *_ in net.sites], "addresses": len(dataset.addresses),
                      "parameters": sum(p.numel() for p in net.parameters())}))
""")


def test_training_on_a_long_trace_stays_within_a_memory_bound(long_dataset, tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(long_dataset.path),
                          str(tmp_path / "training")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(np.isfinite(result["losses"]))
    # Layers for at most 16 instances of each site, not one per address with its instance.
    sites = {a.rpartition("__")[0] for a in result["layers"]}
    assert result["addresses"] > 10_000 > len(result["layers"])
    assert len(result["layers"]) <= 16 * len(sites)
    # Measured: 145 MB here (a layer per instance took 1.9 GB and 4.7 million parameters).
    assert result["growth_mb"] < 400, result
    assert result["parameters"] < 1_000_000


def test_front_end_exits_when_its_engine_is_killed(front_end):
    import os
    import signal
    import subprocess
    import sys
    import time

    engine = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "from etalumis_core import simulate\n"
        "from etalumis_pythia8_adapter import Pythia8TauSimulator\n"
        f"sim = Pythia8TauSimulator({str(front_end)!r})\n"
        "simulate(sim, seed=1)\n"
        "print(sim.pid, flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(engine.stdout.readline())
    os.kill(engine.pid, signal.SIGKILL)  # no close(), no atexit: the front end is orphaned
    engine.wait()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the front end outlived its engine by 10 s")


def test_a_missing_front_end_is_one_clear_error(tmp_path):
    from etalumis_core import ConfigError

    with pytest.raises(ConfigError, match="make pythia8"):
        Pythia8TauSimulator(tmp_path / "pythia8_tau_ppx")
