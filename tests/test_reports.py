"""The domain-free report helpers (etalumis_core.reports) on a small conjugate model whose
posterior is known: a regime (two-way categorical) and a Normal mean, observed twice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core import reports

LABELS = ["calm", "storm"]
PRIOR = [0.7, 0.3]


def model():
    regime = et.sample(et.Categorical(PRIOR), name="regime")
    mu = et.sample(et.Normal(0.0 if regime == 0 else 4.0, 1.0), name="mu")
    et.tag(int(regime) + 1, name="gusts")
    likelihood = et.Normal(mu, 1.0)
    et.observe(likelihood, name="y0")
    et.observe(likelihood, name="y1")
    return mu


@pytest.fixture(scope="module")
def posterior():
    return et.infer(model, observe={"y0": 4.2, "y1": 3.8}, num_traces=4000, seed=0,
                    progress=False)


def exact_storm_probability() -> float:
    # The mean of the two observations is 4 with variance 1/2; mu's prior adds variance 1.
    def evidence(centre):
        return math.exp(-0.5 * (4.0 - centre) ** 2 / 1.5)
    calm, storm = PRIOR[0] * evidence(0.0), PRIOR[1] * evidence(4.0)
    return storm / (calm + storm)


def test_category_summary_ranks_and_labels_the_categories(posterior):
    probs = reports.category_probabilities(posterior, "regime", 2)
    assert probs.sum() == pytest.approx(1.0)
    # Importance sampling from the prior: a 5-standard-error band of its ESS.
    p = exact_storm_probability()
    assert abs(probs[1] - p) < 5 * math.sqrt(p * (1 - p) / posterior.ess)
    summary = reports.category_summary(probs, LABELS, true_index=np.int64(1), prior=PRIOR,
                                       other_labels={"upper": ["CALM", "STORM"]})
    assert summary["map_index"] == 1 and summary["map_name"] == "storm"
    first = summary["probabilities"][0]
    assert list(first) == ["index", "name", "upper", "probability", "prior"]
    assert first["upper"] == "STORM" and first["prior"] == 0.3
    assert summary["true_name"] == "storm" and summary["true_rank"] == 1
    # A variable no trace has: all zeros, and no entry with posterior mass.
    assert not reports.category_probabilities(posterior, "nothing", 3).any()


def test_scalar_and_count_summaries_place_the_truth(posterior):
    truth = reports.truth_values({"m": 3.9, "gusts": 2}, names={"mu": "m"})
    mu = reports.scalar_summary(posterior, "mu", truth)
    assert mu["true"] == 3.9 and mu["true_within_95"] and mu["true_within_90"]
    assert mu["q025"] < mu["q05"] < mu["median"] < mu["q95"] < mu["q975"]
    far = reports.scalar_summary(posterior, "mu", {"mu": 40.0})
    assert not far["true_within_95"] and far["pull"] < -10
    gusts = reports.count_summary(posterior, "gusts", truth)
    assert set(gusts["probabilities"]) <= {"1", "2"} and gusts["mode"] == 2 and gusts["true"] == 2
    assert reports.scalar_summary(posterior, "absent", truth) is None
    # The report calls mu "mean": names maps the report's names to the simulator's.
    groups = reports.posterior_summary(posterior, {"regime": 1, "mu": 3.9}, category="regime",
                                       labels=LABELS, groups={"location": ["mean", "absent"],
                                                              "counts": ["gusts"]},
                                       counts={"counts"}, names={"mean": "mu"})
    assert list(groups) == ["num_traces", "ess", "regime", "location", "counts"]
    assert groups["regime"]["true_name"] == "storm"
    assert list(groups["location"]) == ["mean"] and groups["location"]["mean"]["true"] == 3.9
    assert groups["location"]["mean"]["mean"] == mu["mean"]
    assert "probabilities" in groups["counts"]["gusts"]


def test_headline_says_what_is_most_probable_and_whether_the_truth_is_covered():
    category = reports.category_summary(np.array([0.25, 0.75]), LABELS, true_index=0)
    scalars = {"mu": {"true_within_95": True}, "sigma": {"true_within_95": False},
               "free": {"mean": 1.0}}
    assert reports.headline("regime", LABELS, category, scalars, "parameters") == (
        "most probable regime: storm (posterior probability 0.75); the true regime is calm\n"
        "true parameters inside the central 95% interval: mu yes, sigma NO")
    empty = reports.category_summary(np.zeros(2), LABELS)   # e.g. the regime conditioned on
    assert empty["map_index"] is None and empty["map_name"] is None
    assert reports.headline("regime", LABELS, empty) is None


def test_plots_are_written(posterior, tmp_path):
    probs = reports.category_probabilities(posterior, "regime", 2)
    reports.plot_categories(probs, LABELS, str(tmp_path / "c.png"), true_index=1, prior=PRIOR,
                            title="regime")
    reports.plot_scalars(posterior, ["mu", "absent"], {"mu": 3.9}, str(tmp_path / "s.png"),
                         unit="m/s")
    reports.plot_projections(np.arange(24.0).reshape(2, 3, 4), str(tmp_path / "p.png"))
    for name in ("c.png", "s.png", "p.png"):
        assert (tmp_path / name).stat().st_size > 1000
    observed = reports.observed_value("y0", et.simulate(model, seed=1))
    assert observed.shape == () and json.dumps(float(observed))
