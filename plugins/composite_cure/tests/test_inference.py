"""Inference on synthetic data from known parameters: the internal temperature is recovered.

The uncertain cycle makes the posterior trans-dimensional and extremely peaked (144 readings at
1 °C noise), which single-site random-walk MH does not cross in a test's budget (see README,
"Inference"); this test therefore uses the documented known-cycle variant (``cycle="one_hold"``,
the autoclave log is available) with h_top, h_bottom and the kinetic-rate factor uncertain.
"""
from __future__ import annotations

import numpy as np
import pytest

et = pytest.importorskip("etalumis_core")

from etalumis_composite_cure.analysis import band, band_coverage  # noqa: E402
from etalumis_composite_cure.model import CureSimulator  # noqa: E402


@pytest.mark.timeout(120)
def test_rmh_recovers_mid_thickness_temperature():
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
