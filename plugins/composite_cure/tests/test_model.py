"""The probabilistic cure model: trace structure, tags, reproducibility, plugin wiring, report."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

et = pytest.importorskip("etalumis_core")

from etalumis_composite_cure.cycles import CureCycle, Segment, hexcel_two_hold_cycle, one_hold_cycle  # noqa: E402
from etalumis_composite_cure.model import CureSimulator, make_simulator  # noqa: E402

# a coarse grid keeps the model tests fast; the physics tests live in test_solver.py
FAST = dict(n_laminate=8, n_tool=3, dt=150.0)


@pytest.fixture(scope="module")
def sim():
    return CureSimulator(**FAST)


@pytest.fixture(scope="module")
def traces(sim):
    return [et.simulate(sim, seed=s) for s in range(12)]


def test_number_of_random_choices_varies(traces):
    counts = {len(t.samples()) for t in traces}
    segments = {t.named("num_segments").value for t in traces}
    assert len(counts) > 1 and len(segments) > 1
    for t in traces:
        n = t.named("num_segments").value
        # h_top, h_bottom, rate_factor, cool_rate, three per segment, one Bernoulli per
        # segment below the maximum
        assert len(t.samples()) == 4 + 3 * n + min(n, 2)
    # different trace types: the set of addresses differs with the number of segments
    assert len({t.trace_type for t in traces}) == len(segments)


def test_tags_and_observation_shapes(sim, traces):
    assert sim.observations == {"thermocouples": (2, 72)}
    for t in traces:
        v = t.values_by_name()
        assert np.shape(v["thermocouples"]) == (2, 72)
        for name in ("mid_temperature", "mid_cure", "air_temperature"):
            assert np.shape(v[name]) == (72,)
        assert np.all((v["mid_cure"] >= 0.05 - 1e-12) & (v["mid_cure"] < 1.0))
        peak = v["peak_temperature"]
        assert peak >= np.max(v["mid_temperature"]) - 1e-9
        # every hold lasts longer than the logging interval, so the logged air peak is the peak
        assert v["peak_overshoot"] == pytest.approx(peak - np.max(v["air_temperature"]), abs=1e-9)
        assert v["final_cure"] == pytest.approx(v["mid_cure"][-1])
        assert t.result == pytest.approx(peak)


def test_seeded_reproducibility(sim):
    a, b = et.simulate(sim, seed=7), et.simulate(sim, seed=7)
    c = et.simulate(sim, seed=8)
    np.testing.assert_array_equal(a.named("thermocouples").value, b.named("thermocouples").value)
    np.testing.assert_array_equal(a.named("mid_temperature").value, b.named("mid_temperature").value)
    assert a.trace_type == b.trace_type
    assert not np.array_equal(a.named("thermocouples").value, c.named("thermocouples").value)


def test_observation_noise_matches_config():
    # the residual between the readings and the noise-free prediction has the configured std
    sim = CureSimulator(**FAST, sensors=["top", "mid"], noise_std=2.0)
    t = et.simulate(sim, seed=3)
    obs = t.named("thermocouples")
    residual = obs.value - obs.distribution.mean
    assert residual.shape == (2, 72)
    # 144 draws: the sample std of N(0, 2) lies within ±4 standard errors (2/sqrt(2*144))
    assert abs(residual.std() - 2.0) < 4 * 2.0 / np.sqrt(2 * 144)
    np.testing.assert_allclose(obs.distribution.mean[1], t.named("mid_temperature").value)


def test_prior_covers_reference_cycles(sim):
    # the one-hold benchmark and the Hexcel two-hold cycle are both inside the prior's support
    # and inside the observation window
    for cycle, n in ((one_hold_cycle(), 1), (hexcel_two_hold_cycle(), 2)):
        temps = cycle.knot_temperatures[1:-1:2]
        holds = np.diff(cycle.knot_times)[1::2][:n]
        ramps = [abs(b - a) / dt for a, b, dt in zip(cycle.knot_temperatures[:-1:2],
                                                      cycle.knot_temperatures[1::2],
                                                      np.diff(cycle.knot_times)[::2])]
        assert n <= sim.max_segments
        assert all(sim.hold_temperature_range[0] <= x <= sim.hold_temperature_range[1] for x in temps)
        assert all(sim.hold_time_range[0] <= x <= sim.hold_time_range[1] for x in holds)
        assert all(sim.ramp_rate_range[0] <= x <= sim.ramp_rate_range[1] for x in ramps[:n])
        assert cycle.end_time <= sim.duration


def test_cycle_from_segments():
    c = CureCycle.from_segments([Segment(2.0, 107.0, 60.0), Segment(2.0, 177.0, 120.0)], 2.0)
    assert c.knot_times == (0.0, 43.5, 103.5, 138.5, 258.5, 337.0)
    assert c(np.array([0.0, 43.5 * 60, 400 * 60])).tolist() == [20.0, 107.0, 20.0]
    assert one_hold_cycle()(np.array([26 * 60.0])) == pytest.approx(100.0)


def test_fixed_cycle_variant_has_three_latents():
    sim = CureSimulator(**FAST, cycle="one_hold")
    t = et.simulate(sim, seed=0)
    assert sorted(v.name for v in t.samples()) == ["h_bottom", "h_top", "rate_factor"]


def test_config_validation():
    with pytest.raises(ValueError):
        CureSimulator(observation_interval=5.0, dt=70.0)
    with pytest.raises(ValueError):
        CureSimulator(sensors=["nowhere"])
    with pytest.raises(ValueError):
        CureSimulator(sensors=[0.2])


def test_plugin_registers_simulator_and_config():
    from omegaconf import OmegaConf

    from etalumis_composite_cure import plugin

    registered = {}
    plugin.etalumis_register_simulators(lambda name, factory, description="": registered.update({name: factory}))
    paths = []
    plugin.etalumis_config_paths(paths.append)
    assert set(registered) == {"composite_cure"} and paths == ["pkg://etalumis_composite_cure.conf"]
    conf_file = os.path.join(os.path.dirname(plugin.__file__), "conf", "simulator", "composite_cure.yaml")
    cfg = OmegaConf.load(conf_file)
    assert cfg.name == "composite_cure"
    sim = registered["composite_cure"](**cfg.params)
    assert isinstance(sim, CureSimulator)
    assert sim.observations == {"thermocouples": (2, 72)}
    assert make_simulator(**{**OmegaConf.to_container(cfg.params), **FAST}).n_times == 72


def test_report_writes_plots_and_json(tmp_path, sim):
    truth = et.simulate(sim, seed=0)
    post = et.infer(sim, observe=et.observations_of(truth), engine="importance", num_traces=20,
                    seed=1, progress=False)
    summary = sim.report(post, truth, str(tmp_path))
    json.dumps(summary)  # JSON-serialisable
    for name in ("mid_temperature.png", "parameters.png", "composite_cure_summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("h_top", "h_bottom", "rate_factor", "peak_temperature", "final_cure"):
        assert {"mean", "q05", "q95", "truth"} <= set(summary[name])
    assert len(summary["mid_temperature"]["low"]) == 72
    assert 0.0 <= summary["mid_temperature"]["coverage_90"] <= 1.0
