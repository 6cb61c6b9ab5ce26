"""The tau-decay simulator under the etalumis runtime: trace structure, priors, likelihood,
plugin registration, the analysis report, and inference on a synthetic event."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

import etalumis_core as et
from etalumis_core.distributions import Categorical
from etalumis_toy_tau_decay import analysis, physics, plugin
from etalumis_toy_tau_decay.decay import NumpySampler, Particle
from etalumis_toy_tau_decay.model import (TAG_NAMES, TauDecaySimulator, calorimeter_likelihood,
                                          exact_calorimeter_likelihood)


@pytest.fixture(scope="module")
def sim():
    return TauDecaySimulator()


@pytest.fixture(scope="module")
def prior_traces(sim):
    return [et.simulate(sim, seed=s) for s in range(60)]


def first_event_of_channel(sim, channel: int, start: int = 0) -> et.Trace:
    seed = start
    while True:
        trace = et.simulate(sim, seed=seed)
        if trace.result["channel"] == channel:
            return trace
        seed += 1


def test_first_random_choices_are_momentum_then_channel(prior_traces):
    for trace in prior_traces:
        samples = trace.samples()
        assert [v.name for v in samples[:4]] == ["px", "py", "pz", "channel"]
        assert [v.distribution.name for v in samples[:4]] == ["Uniform"] * 3 + ["Categorical"]
        assert all(v.control for v in samples[:4])
        values = trace.values_by_name()
        assert -3 <= values["px"] <= 3 and -3 <= values["py"] <= 3 and 43 <= values["pz"] <= 47
        assert values["channel"] == trace.result["channel"]


def test_momentum_prior_ranges_are_configurable():
    sim = TauDecaySimulator(px_range=(0.0, 0.5), py_range=(1.0, 2.0), pz_range=(10.0, 11.0))
    values = et.simulate(sim, seed=0).values_by_name()
    assert 0 <= values["px"] <= 0.5 and 1 <= values["py"] <= 2 and 10 <= values["pz"] <= 11
    with pytest.raises(ValueError):
        TauDecaySimulator(px_range=(1.0, -1.0))
    with pytest.raises(ValueError):
        TauDecaySimulator(likelihood="cauchy")


def test_traces_hold_rejection_loops_and_vary_in_length(prior_traces):
    lengths = {len(t.trace_type) for t in prior_traces}
    assert len(lengths) > 5
    repeated = [t for t in prior_traces
                if any(a.endswith("__2") and "_accept__" in a for a in t.trace_type)]
    assert repeated, "no trace rejected a phase-space or resonance point"


@pytest.fixture(scope="module")
def normal_traces():
    """Traces under the Normal approximation, which draws every deposit."""
    sim = TauDecaySimulator(likelihood="poisson_normal")
    return [et.simulate(sim, seed=s) for s in range(20)]


def test_calorimeter_draws_and_observation(normal_traces):
    for trace in normal_traces:
        counts = [v for v in trace.samples() if "_deposits__" in v.address]
        positions = [v for v in trace.samples() if "_positions__" in v.address]
        assert len(counts) == len(positions)   # every particle that deposits: one count, one draw
        assert all(v.control and v.distribution.name == "Poisson" for v in counts)
        assert all(not v.control and v.name is None for v in positions)
        assert all(np.shape(p.value) == (c.value, 3) for c, p in zip(counts, positions))
        (obs,) = trace.observations()
        assert obs.name == "calorimeter" and np.shape(obs.value) == (35, 35, 20)
        values = trace.values_by_name()
        assert set(TAG_NAMES) <= set(values)
        deposits = trace.result["calorimeter"]
        assert values["e_calorimeter"] == pytest.approx(deposits.sum())
        assert deposits.sum() == pytest.approx(0.005 * sum(c.value for c in counts), abs=0.05)
        assert values["e_visible"] + values["e_invisible"] == pytest.approx(values["e_tau"])


def test_the_exact_likelihood_observes_counts_and_draws_no_deposit(prior_traces):
    for trace in prior_traces[:20]:
        assert not [v for v in trace.samples() if "calorimeter_" in v.address]
        (obs,) = trace.observations()
        assert obs.name == "calorimeter" and obs.distribution.name == "Poisson"
        counts = trace.result["calorimeter"]
        assert np.shape(counts) == (35, 35, 20) and np.all(counts == np.round(counts))
        values = trace.values_by_name()
        assert set(TAG_NAMES) <= set(values)
        assert values["e_calorimeter"] == pytest.approx(0.005 * counts.sum())
        # The counts are Poisson around the rates: their total within 5 sigma of its mean.
        rate = trace.result["calorimeter_expected"].sum()
        assert abs(counts.sum() - rate) < 5 * math.sqrt(rate) + 1


@pytest.mark.parametrize("pdg", [11, 22, 211, 130])
def test_expected_counts_are_the_mean_of_the_drawn_deposits(pdg):
    """Marginalising the Poisson count and the Gaussian positions is exact: the mean of many
    binned realisations equals the rates, voxel by voxel, within their Poisson error."""
    calorimeter = TauDecaySimulator().calorimeter
    particle = Particle(pdg, np.array([20.0, 1.0, -0.5, 19.9]))   # (E, px, py, pz), GeV
    rates = calorimeter.expected_counts([particle])
    sampler, runs = NumpySampler(pdg), 200
    mean = sum(calorimeter.deposit([particle], sampler) for _ in range(runs)) / 0.005 / runs
    lit = rates > 2.0
    assert lit.sum() > 20
    error = np.sqrt(rates[lit] / runs)
    assert np.all(np.abs(mean[lit] - rates[lit]) < 5 * error)
    assert mean.sum() == pytest.approx(rates.sum(), rel=5 / math.sqrt(rates.sum() * runs))


def test_the_exact_likelihood_identifies_the_event(sim):
    truth = first_event_of_channel(sim, 4)
    observed, rates = truth.result["calorimeter"], truth.result["calorimeter_expected"]

    def log_l(r):
        return exact_calorimeter_likelihood(np.maximum(r - 1e-4, 0.0)).log_prob(observed).sum()

    assert np.isfinite(log_l(rates))
    assert log_l(rates) - log_l(np.zeros_like(rates)) > 100
    assert log_l(rates) - log_l(np.roll(rates, 1, axis=0)) > 10
    assert log_l(rates) - log_l(np.roll(rates, 1, axis=1)) > 10
    with pytest.raises(ValueError, match="background"):
        TauDecaySimulator(background=0.0)


def test_normal_likelihood_is_poisson_like_with_a_floor():
    mean = np.zeros((35, 35, 20))
    mean[17, 17, 5] = 2.0
    d = calorimeter_likelihood(mean)
    assert d.batch_shape == (35, 35, 20)
    assert d.stddev[17, 17, 5] == pytest.approx(math.sqrt(0.005 * 2.0 + 0.005 ** 2))
    assert d.stddev[0, 0, 0] == pytest.approx(0.005)
    fixed = calorimeter_likelihood(mean, "fixed_normal", sigma0=0.1)
    assert np.all(fixed.stddev == 0.1)


def test_branching_ratios_of_the_channel_prior():
    # bulk draw of the channel choice exactly as the model makes it, then a chi-square test
    sim = TauDecaySimulator()
    d = Categorical(sim.channel_probs)
    rng = np.random.default_rng(2024)
    n = 200_000
    counts = np.bincount([d.sample(rng) for _ in range(n)], minlength=38)
    expected = n * physics.CHANNEL_PROBS
    big = expected >= 20
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_branching_ratios_end_to_end(sim):
    post = et.infer(sim, observe={"calorimeter": np.zeros((35, 35, 20))}, num_traces=600,
                    seed=1, progress=False)
    channels = post.marginal("channel").values   # the prior draws, whatever their weights
    n = len(channels)
    for index in (0, 1, 2, 4):
        p = physics.CHANNEL_PROBS[index]
        assert abs(np.mean(channels == index) - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_truth_explains_its_event_far_better_than_alternatives():
    # The likelihood identifies the event: an empty calorimeter (a muon decay) or the true
    # shower displaced by one voxel both explain the observation far worse than the truth.
    truth = first_event_of_channel(TauDecaySimulator(likelihood="poisson_normal"), 4)
    observed, mean = truth.result["calorimeter"], truth.result["calorimeter_expected"]

    def log_l(m):
        return calorimeter_likelihood(m).log_prob(observed).sum()

    assert log_l(mean) - log_l(np.zeros_like(mean)) > 100
    assert log_l(mean) - log_l(np.roll(mean, 1, axis=0)) > 10
    assert log_l(mean) - log_l(np.roll(mean, 1, axis=1)) > 10


def test_plugin_registers_the_simulator_and_its_config(tmp_path):
    plugins = et.load_plugins(load_entry_points=False, extra=[("toy_tau_decay", plugin)])
    sim = plugins.simulators.create("toy_tau_decay", sigma0=0.01)
    assert isinstance(sim, TauDecaySimulator) and sim.sigma0 == 0.01
    assert sim.observations == {"calorimeter": (35, 35, 20)}
    from omegaconf import OmegaConf
    path = os.path.join(os.path.dirname(plugin.__file__), "conf", "simulator",
                        "toy_tau_decay.yaml")
    conf = OmegaConf.to_container(OmegaConf.load(path))
    assert conf["name"] == "toy_tau_decay"
    assert plugins.simulators.create("toy_tau_decay", **conf["params"]).config() \
        == TauDecaySimulator().config()
    # The config holds the defaults, so a calibration started from the command line records
    # the same simulator as one started from Python, and either resumes the other.
    et.calibrate("toy_tau_decay", engine="importance", num_events=1, num_traces=4,
                 simulator_options=conf["params"], output_dir=tmp_path, plots=False,
                 progress=False, plugins=plugins)
    with open(tmp_path / "calibration_manifest.json") as f:
        assert json.load(f)["simulator_options"] == {}


def test_report_writes_summary_and_plots(sim, tmp_path):
    truth = first_event_of_channel(sim, 4)
    post = et.infer(sim, observe={"calorimeter": truth.result["calorimeter"]}, num_traces=64,
                    seed=0, progress=False)
    summary = sim.report(post, truth, str(tmp_path))
    assert summary["channel"]["true_index"] == 4
    assert summary["channel"]["true_name"] == "π⁻ π⁰ ν"
    probs = [c["probability"] for c in summary["channel"]["probabilities"]]
    assert sum(probs) == pytest.approx(1.0)
    assert set(summary["momentum"]) == {"px", "py", "pz"}
    assert summary["momentum"]["px"]["true"] == pytest.approx(truth.values_by_name()["px"])
    assert {"n_charged_hadrons", "n_photons", "n_leptons"} <= set(summary["composition"])
    assert summary["composition"]["n_charged_hadrons"]["true"] == 1
    assert {"e_visible", "e_photons", "e_charged_hadrons"} <= set(summary["energies"])
    for name in ("tau_channels.png", "tau_momentum.png", "tau_calorimeter.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert json.loads((tmp_path / "tau_summary.json").read_text())["channel"]["true_index"] == 4
    # without truth or an output directory the summary still works
    assert "true_index" not in analysis.report(post, None, None)["channel"]


def test_smc_identifies_a_pi_pi0_event_and_covers_its_momentum(sim):
    """On the first synthetic tau -> pi- pi0 nu event of the seeds (the default job's event),
    SMC puts the true channel first and the true px, py, pz inside the central 95% intervals.
    The calorimeter cannot tell its pion from a kaon of the same energy and direction, and
    τ → K⁻ π⁰ ν keeps a share (about a tenth: the evidence of each channel on its own gives
    0.13).

    The neutrino leaves the tau momentum free along a cone around the visible rho: the
    posterior of (px, py) is a ring of about a GeV, which the simulator's own moves travel
    (single-site MH and SMC without them collapse onto a piece of it). Over 20 such events,
    `benchmarks/bench_tau_calibration.py` measures how often the channel comes first and how
    often the truth lies inside each interval."""
    truth = first_event_of_channel(sim, physics.channel_index("π⁻ π⁰"))
    post = et.infer(sim, observe={"calorimeter": truth.result["calorimeter"]}, engine="smc",
                    num_traces=200, seed=0, progress=False)
    probs = analysis.channel_probabilities(post)
    assert int(np.argmax(probs)) == 4 and probs[4] > 0.6
    assert probs[physics.channel_index("K⁻ π⁰")] > 0.02
    for key in ("px", "py", "pz"):
        low, high = post.marginal(key).quantile([0.025, 0.975])
        assert low < truth.result[key] < high, (key, truth.result[key], low, high)
    low, high = post.marginal("px").quantile([0.025, 0.975])
    assert high - low > 0.5   # the ring, not a collapsed population
    assert post.metadata["round_stats"][-1]["acceptance_model"] > 0.5
