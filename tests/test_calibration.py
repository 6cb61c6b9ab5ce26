"""Calibration: events from the prior, inferred, scored against their truth.

The Gaussian model's posterior is exact up to the engine's sampling error, so a correct engine's
coverage lies inside the binomial 99% band at every level. Each level of a calibrated engine
leaves the band with probability at most 1% per run; the seeds are fixed, so these tests are
deterministic, and with these seeds every observed coverage lies at least 0.02 inside its band
(importance at 200 events: 0.51, 0.835, 0.915, 0.965). An engine whose log weights are tripled has posteriors
about 1/sqrt(3) as wide: its 90% interval holds the truth about 66% of the time, far below the
band (0.84 at 200 events).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.calibration import LEVELS, coverage_band, summarize, summary_lines
from etalumis_core.errors import ConfigError

SHAPE = {"simulator", "engine", "num_events", "event_seed", "cpu_seconds_per_event",
         "wall_seconds", "latents"}


class SharpenedImportance(et.ImportanceSampling):
    """Deliberately overconfident: the importance weights raised to the power 3."""

    def _run(self, *args, **kwargs):
        p = super()._run(*args, **kwargs)
        return et.Posterior(p.log_weights * 3.0, p.chain, p.trace_type_id, p.trace_types,
                            p.columns, p.named, p.results, p.metadata)


def assert_in_band(summary):
    mu = summary["latents"]["mu"]
    assert mu["kind"] == "continuous" and mu["num_events"] == summary["num_events"]
    for level in LEVELS:
        low, high = coverage_band(summary["num_events"], level)
        assert low <= mu["coverage"][f"{level:g}"] <= high, (level, mu["coverage"])
    assert mu["within_band"] and summary["within_band"]


def test_coverage_band_is_the_central_binomial_interval():
    from scipy.stats import binom

    low, high = coverage_band(200, 0.9)
    assert (low, high) == (0.84, 0.95)
    # at most 0.5% of a calibrated engine's runs fall below, and at most 0.5% above
    assert binom.cdf(low * 200 - 1, 200, 0.9) <= 0.005 and binom.sf(high * 200, 200, 0.9) <= 0.005
    assert coverage_band(100, 0.5) == (0.37, 0.63)


def test_importance_on_gaussian_is_calibrated_and_written_as_returned(tmp_path):
    summary = et.calibrate("gaussian", engine="importance", num_events=200, num_traces=1000,
                           seed=0, output_dir=tmp_path, progress=False)
    assert SHAPE <= set(summary)
    assert_in_band(summary)
    ranks = summary["latents"]["mu"]["ranks"]
    assert len(ranks) == 200 and all(0.0 <= r <= 1.0 for r in ranks)
    # ranks of a calibrated engine are uniform: each decile holds 20 +- binomial noise
    counts = np.histogram(ranks, bins=10, range=(0, 1))[0]
    assert counts.min() >= 8 and counts.max() <= 33, counts
    assert summary["cpu_seconds_per_event"] > 0 and summary["wall_seconds"] > 0
    written = json.loads((tmp_path / "calibration.json").read_text())
    assert written == json.loads(json.dumps(summary))
    for plot in ("calibration_coverage.png", "calibration_ranks.png"):
        assert plot in summary["plots"] and (tmp_path / plot).stat().st_size > 0
    assert len(os.listdir(tmp_path / "events")) == 200


def test_an_overconfident_engine_fails_the_band():
    summary = et.calibrate("gaussian", engine=SharpenedImportance(), num_events=200,
                           num_traces=1000, seed=0, progress=False)
    mu = summary["latents"]["mu"]
    assert not mu["within_band"] and not summary["within_band"]
    for level in LEVELS:
        key = f"{level:g}"
        assert mu["coverage"][key] < mu["coverage_band"][key][0], (key, mu["coverage"])


def test_a_killed_run_resumes_and_other_arguments_are_refused(tmp_path):
    args = dict(engine="importance", num_events=12, num_traces=200, seed=3, event_seed=5,
                plots=False, progress=False)
    full = et.calibrate("gaussian", output_dir=tmp_path, **args)
    events = tmp_path / "events"
    kept = {p.name: p.stat().st_mtime_ns for p in sorted(events.iterdir())[:7]}
    for path in sorted(events.iterdir())[7:]:
        path.unlink()   # as if killed after seven events
    resumed = et.calibrate("gaussian", output_dir=tmp_path, **args)
    assert resumed["latents"] == full["latents"]
    assert {p.name: p.stat().st_mtime_ns for p in sorted(events.iterdir())[:7]} == kept
    assert json.loads((events / "event-000011.json").read_text())["truth_seed"] == 16
    with pytest.raises(ConfigError, match="num_traces.*repeat its arguments"):
        et.calibrate("gaussian", output_dir=tmp_path, **{**args, "num_traces": 300})
    manifest = tmp_path / "calibration_manifest.json"
    earlier = json.loads(manifest.read_text())
    del earlier["scoring"]   # as written before scoring 2: intervals from quantiles
    manifest.write_text(json.dumps(earlier))
    with pytest.raises(ConfigError, match="scored by an earlier version.*another output"):
        et.calibrate("gaussian", output_dir=tmp_path, **args)


def gaussian_with_noise(noise: float = 1.0):
    def model():
        mu = et.sample(et.Normal(0.0, 1.0), name="mu")
        et.observe(et.Normal(mu, noise), name="y")
    return model


def test_options_spelled_out_or_left_at_their_defaults_are_the_same_run(tmp_path):
    """The command line passes a simulator's whole config, the Python API none of it: a run
    records only the options that differ from the factory's defaults, so either resumes the
    other."""
    from etalumis_core.simulator import SimulatorSpec

    def spec(**options):
        return SimulatorSpec(gaussian_with_noise, options, name="noisy")

    args = dict(engine="importance", num_events=6, num_traces=100, seed=1, plots=False,
                progress=False, output_dir=tmp_path)
    full = et.calibrate(spec(noise=1.0), **args)
    manifest = tmp_path / "calibration_manifest.json"
    assert json.loads(manifest.read_text())["simulator_options"] == {}
    events = tmp_path / "events"
    kept = {p.name: p.stat().st_mtime_ns for p in sorted(events.iterdir())[:4]}
    for path in sorted(events.iterdir())[4:]:
        path.unlink()
    assert et.calibrate(spec(), **args)["latents"] == full["latents"]
    assert {p.name: p.stat().st_mtime_ns for p in sorted(events.iterdir())[:4]} == kept
    with pytest.raises(ConfigError, match="simulator_options"):
        et.calibrate(spec(noise=2.0), **args)


def spike_and_slab():
    on = int(et.sample(et.distributions.Categorical([0.6, 0.4]), name="on"))
    x = float(et.sample(et.Normal(0.0, 2.0), name="slab")) if on else 0.0
    et.tag(x, "x")   # continuous, with an atom at 0 in the prior and in every posterior
    et.observe(et.Normal(x, 1.0), name="y")


def test_a_latent_with_an_atom_is_scored_calibrated():
    """Where the posterior has mass exactly at the truth (x = 0 here), the rank splits that mass
    at a uniform draw, and so do the intervals: a calibrated engine stays inside the band (with
    seed 0 every level at least 0.02 inside: 0.485, 0.755, 0.88, 0.925). Counting the interval
    [0, 0] as covering every event whose truth is 0 gave 0.66 at level 0.5, above the band
    (0.41-0.59), and piled the ranks between 0.4 and 0.6."""
    summary = et.calibrate(spike_and_slab, engine="importance", num_events=200,
                           num_traces=3000, seed=0, progress=False, plots=False)
    x = summary["latents"]["x"]
    assert x["kind"] == "continuous" and x["within_band"], x["coverage"]
    assert x["coverage"]["0.5"] < 0.55
    counts = np.histogram(x["ranks"], bins=10, range=(0, 1))[0]
    assert counts.min() >= 8 and counts.max() <= 33, counts


def test_discrete_latents_get_top1_and_a_reliability_table():
    summary = et.calibrate("poisson_mixture", engine="importance", num_events=40,
                           num_traces=500, progress=False)
    latents = summary["latents"]
    assert latents["n"]["kind"] == "discrete" and latents["clusters"]["kind"] == "discrete"
    assert latents["total"]["kind"] == "continuous"
    n = latents["n"]
    assert 0.0 <= n["top1"] <= 1.0 and 0.0 < n["mean_p_true"] <= 1.0
    assert sum(row["count"] for row in n["reliability"]) == n["num_events"] == 40
    for row in n["reliability"]:
        assert row["low"] <= row["mean_predicted"] <= row["high"]
        assert 0.0 <= row["fraction_correct"] <= 1.0
    # a calibrated engine is right about as often as it says (10 standard errors of slack)
    assert abs(n["top1"] - n["mean_p_top"]) < 10 * np.sqrt(0.25 / 40)


def _tagged_category():
    # The category also arrives as a float tag, as every number does over PPX.
    k = int(et.sample(et.distributions.Categorical([0.5, 0.3, 0.2]), name="k"))
    et.tag(float(k), "k_tag")
    et.observe(et.distributions.Normal(float(k), 0.5), name="y")


def test_float_valued_names_declared_discrete_are_scored_as_categories():
    kwargs = dict(engine="importance", num_events=20, num_traces=200, progress=False)
    plain = et.calibrate(_tagged_category, **kwargs)
    declared = et.calibrate(_tagged_category, discrete=["k_tag"], **kwargs)
    assert plain["latents"]["k_tag"]["kind"] == "continuous"
    k, k_tag = declared["latents"]["k"], declared["latents"]["k_tag"]
    assert k["kind"] == k_tag["kind"] == "discrete"
    # the tag is the category itself: the same scores as the sampled one
    assert (k_tag["top1"], k_tag["mean_p_true"]) == (k["top1"], k["mean_p_true"])


def test_an_overconfident_engine_leaves_the_reliability_band():
    """Each reliability bin carries the binomial band of its fraction right. With seed 0 the
    calibrated engine's bins lie inside theirs (the nearest 0.05 from an edge); the engine with
    tripled log weights calls 144 of 200 events at 0.9 or more and is right in 90 % of them,
    below that bin's band (0.96-1)."""
    kwargs = dict(num_events=200, num_traces=200, seed=0, progress=False)
    honest = et.calibrate(_tagged_category, engine="importance", **kwargs)
    k = honest["latents"]["k"]
    assert k["kind"] == "discrete" and k["within_band"]
    for row in k["reliability"]:
        assert row["band"] == list(coverage_band(row["count"], row["mean_predicted"]))
        assert row["band"][0] <= row["fraction_correct"] <= row["band"][1] and row["within_band"]
    assert "OUTSIDE" not in next(line for line in summary_lines(honest) if line.startswith("  k:"))

    sharp = et.calibrate(_tagged_category, engine=SharpenedImportance(), **kwargs)
    k = sharp["latents"]["k"]
    assert not k["within_band"] and not sharp["within_band"]
    top = k["reliability"][-1]
    assert top["low"] == 0.9 and top["count"] > 100 and top["fraction_correct"] < top["band"][0]
    line = next(line for line in summary_lines(sharp) if line.startswith("  k:"))
    assert f"OUTSIDE the 99% band where p(top) is 0.9-1.0: " \
           f"{round(top['fraction_correct'] * top['count'])} of {top['count']} right" in line


def test_summarize_scores_by_name():
    events = [{"latents": {"x": {"kind": "continuous", "rank": r, "covered":
                                 {f"{lv:g}": abs(r - 0.5) <= lv / 2 for lv in LEVELS}}}}
              for r in (np.arange(200) + 0.5) / 200]
    x = summarize(events)["x"]
    assert x["coverage"] == {"0.5": 0.5, "0.8": 0.8, "0.9": 0.9, "0.95": 0.95}
    assert x["within_band"]


def test_summarize_splits_categories_by_the_engines_warnings():
    """Top-1, and the certain answers right, where the engine warned about its posterior and
    where it did not, for each kind of warning and for any: which warnings single out the
    events to doubt. Older event files kept the sentences alone, or no warnings."""
    def event(correct, kinds, p_top=0.99):
        return {"latents": {"k": {"kind": "discrete", "p_top": p_top, "correct": correct,
                                  "p_true": p_top if correct else 0.0}},
                "warnings": {kind: f"a sentence about {kind}" for kind in kinds}}

    both = ("lost_stratum", "not_decorrelated")
    events = ([event(True, both)] * 30 + [event(False, both)] * 8
              + [event(True, both[1:])] * 20 + [event(True, ())] * 40
              + [event(False, (), p_top=0.6), event(True, (), p_top=0.6)])
    k = summarize(events)["k"]
    assert list(k["by_warning"]) == ["any", "lost_stratum", "not_decorrelated"]
    lost = k["by_warning"]["lost_stratum"]
    assert lost["warned"] == pytest.approx({"num_events": 38, "top1": 30 / 38, "mean_p_top": 0.99,
                                            "certain": 38, "certain_right": 30})
    assert lost["unwarned"] == pytest.approx({"num_events": 62, "top1": 61 / 62,
                                              "mean_p_top": (60 * 0.99 + 2 * 0.6) / 62,
                                              "certain": 60, "certain_right": 60})
    assert k["by_warning"]["any"]["warned"]["num_events"] == 58
    summary = {"engine": "e", "simulator": "s", "num_events": 100, "cpu_seconds_per_event": 1.0,
               "confidence": 0.99, "latents": {"k": k}}
    assert "    where the engine warned, top-1 there | elsewhere: any warning (58 events) " \
           "0.86 | 0.98, lost_stratum (38 events) 0.79 | 0.98, not_decorrelated (58 events) " \
           "0.86 | 0.98" in summary_lines(summary)
    sentences = [dict(e, warnings=list(e["warnings"].values())) for e in events]
    assert list(summarize(sentences)["k"]["by_warning"]) == ["any"]
    older = [{"latents": e["latents"]} for e in events]
    assert "by_warning" not in summarize(older)["k"]


@pytest.mark.timeout(120)
def test_rmh_on_gaussian_is_calibrated():
    assert_in_band(et.calibrate("gaussian", engine="rmh", num_events=100, num_traces=1000,
                                chains=2, burn_in=200, initial_traces=100, progress=False))


@pytest.mark.timeout(120)
def test_smc_on_gaussian_is_calibrated():
    assert_in_band(et.calibrate("gaussian", engine="smc", num_events=100, num_traces=200,
                                progress=False))


@pytest.mark.timeout(120)
def test_calibrate_from_the_command_line_on_a_process_pool(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "etalumis_core.app.cli", "calibrate", "simulator=gaussian",
               "engine=importance", "num_events=20", "num_traces=200",
               "executor.params.num_workers=2", f"output={out}", "progress=false",
               f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=110)
    assert done.returncode == 0, done.stderr
    assert "mu: coverage 0.5 ->" in done.stdout
    summary = json.loads((out / "calibration.json").read_text())
    assert SHAPE <= set(summary) and summary["num_events"] == 20
    serial = et.calibrate("gaussian", engine="importance", num_events=20, num_traces=200,
                          progress=False)
    assert summary["latents"] == json.loads(json.dumps(serial["latents"]))


def slow_gaussian():
    import time

    time.sleep(0.2)   # 15 traces: an event takes 3 s, each trace a fifth of a second
    mu = et.sample(et.Normal(0.0, 1.0), name="mu")
    et.observe(et.Normal(mu, 1.0), name="y")


def test_the_pool_timeout_measures_traces_not_whole_events(tmp_path):
    """An event's inference is one work item; the executor's per-trace timeout must not kill a
    worker whose event takes longer than the timeout while each of its traces is quick."""
    from etalumis_core.executors import ProcessPoolExecutor

    with ProcessPoolExecutor(num_workers=1, timeout=1.5, retries=0) as pool:
        result = et.calibrate(slow_gaussian, engine="importance", num_events=2, num_traces=15,
                              seed=0, executor=pool, progress=False, plots=False,
                              output_dir=str(tmp_path))
    assert result["num_events"] == 2
