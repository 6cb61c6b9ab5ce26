"""Inference on synthetic data with the random cure cycle: the internal temperature is recovered.

The cycle is uncertain (1 to 3 ramp/hold segments, the plugin's default), so the posterior is
trans-dimensional and sharply peaked (144 readings at 1 °C). The documented engine (README,
"Inference") is ``composite_cure_smc`` with 64 particles; on the calibration grid (8 + 2 cells,
dt = 300 s; truth and model share it) one event costs about 75 CPU-seconds. This test runs the
same engine settings with half the particles (about 37 CPU-seconds) on one event.
The known-cycle variant (the autoclave log available) is checked with RMH as well.
"""
from __future__ import annotations

import numpy as np
import pytest

et = pytest.importorskip("etalumis_core")

from etalumis_composite_cure.analysis import band, band_coverage  # noqa: E402
from etalumis_composite_cure.model import SMC_PARTICLES, CureSimulator  # noqa: E402

GRID = dict(n_laminate=8, n_tool=2, dt=300.0)


@pytest.mark.timeout(300)
def test_smc_recovers_mid_thickness_temperature_with_the_random_cycle():
    sim = CureSimulator(**GRID)
    assert sim.fixed_cycle is None   # the random cycle is the default
    truth = et.simulate(sim, seed=1)
    post = et.infer(sim, observe=et.observations_of(truth), engine="composite_cure_smc",
                    num_traces=SMC_PARTICLES // 2, seed=0, progress=False)
    posterior_band = band(post, "mid_temperature")
    prior = np.array([et.simulate(sim, seed=1000 + i).named("mid_temperature").value
                      for i in range(100)])
    prior_low, prior_high = np.quantile(prior, [0.05, 0.95], axis=0)

    true_mid = truth.named("mid_temperature").value
    assert band_coverage(posterior_band, true_mid) >= 0.8
    posterior_width = np.mean(posterior_band["high"] - posterior_band["low"])
    assert posterior_width < 0.05 * np.mean(prior_high - prior_low)
    # the cycle's structure and the quantities calibrated in the README
    assert post.marginal("num_segments").mode() == truth.named("num_segments").value
    for name in ("peak_temperature", "final_cure", "h_top", "rate_factor"):
        low, high = post.marginal(name).quantile([0.005, 0.995])
        assert low <= truth.named(name).value <= high, name


@pytest.mark.timeout(120)
def test_rmh_recovers_mid_thickness_temperature_with_a_known_cycle():
    sim = CureSimulator(n_laminate=10, n_tool=3, dt=150.0, cycle="one_hold")
    truth = et.simulate(sim, seed=1)
    true_mid = truth.named("mid_temperature").value
    post = et.infer(sim, observe=et.observations_of(truth), engine="rmh", num_traces=1000,
                    burn_in=400, seed=1, progress=False)
    posterior_band = band(post, "mid_temperature")
    prior = np.array([et.simulate(sim, seed=1000 + i).named("mid_temperature").value
                      for i in range(100)])
    prior_low, prior_high = np.quantile(prior, [0.05, 0.95], axis=0)

    assert band_coverage(posterior_band, true_mid) >= 0.8
    posterior_width = np.mean(posterior_band["high"] - posterior_band["low"])
    prior_width = np.mean(prior_high - prior_low)
    assert posterior_width < 0.25 * prior_width
    # and the process parameters move towards the truth
    for name in ("h_top", "h_bottom", "rate_factor"):
        m = post.marginal(name)
        lo, hi = m.quantile([0.01, 0.99])
        assert lo <= truth.named(name).value <= hi, name
