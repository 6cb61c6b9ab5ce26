"""Posterior summaries and plots for the cure model (used by ``CureSimulator.report``)."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: Scalar quantities summarised in every report.
SCALARS = ("h_top", "h_bottom", "rate_factor", "peak_temperature", "peak_overshoot", "final_cure")
#: Time series drawn as bands.
SERIES = ("mid_temperature", "mid_cure", "air_temperature")


def truth_values(truth: Any) -> dict[str, Any]:
    """Values by name of a ground-truth trace (a Trace, a mapping, or None)."""
    if truth is None:
        return {}
    if hasattr(truth, "values_by_name"):
        return dict(truth.values_by_name())
    if isinstance(truth, Mapping):
        return dict(truth)
    raise TypeError(f"truth must be a Trace, a mapping or None, not {type(truth).__name__}")


def band(posterior: Any, name: str, low: float = 0.05, high: float = 0.95) -> dict[str, np.ndarray]:
    """Weighted pointwise quantiles of an array-valued tag: low, median, high, mean."""
    marginal = posterior.marginal(name)
    q = np.asarray(marginal.quantile([low, 0.5, high]))
    return {"low": q[0], "median": q[1], "high": q[2], "mean": np.asarray(marginal.mean)}


def band_coverage(b: Mapping[str, np.ndarray], truth: np.ndarray) -> float:
    """Fraction of time points at which the truth lies inside the band."""
    truth = np.asarray(truth, dtype=float)
    return float(np.mean((truth >= b["low"]) & (truth <= b["high"])))


def scalar_summary(posterior: Any, name: str, truth: dict[str, Any]) -> dict[str, Any]:
    m = posterior.marginal(name)
    q = np.asarray(m.quantile([0.05, 0.5, 0.95]), dtype=float)
    out = {"mean": float(m.mean), "std": float(m.stddev), "q05": float(q[0]),
           "median": float(q[1]), "q95": float(q[2]), "ess": float(m.ess)}
    if name in truth:
        out["truth"] = float(truth[name])
    return out


def cure_report(sim: Any, posterior: Any, truth: Any, output_dir: str) -> dict:
    """Write the plots and ``composite_cure_summary.json`` to ``output_dir``; return the summary."""
    os.makedirs(output_dir, exist_ok=True)
    tv = truth_values(truth)
    t = np.asarray(sim.times_minutes, dtype=float)
    summary: dict[str, Any] = {"num_traces": int(posterior.num_traces), "ess": float(posterior.ess),
                               "times_minutes": t.tolist(), "sensors": list(sim.sensor_names),
                               "noise_std": sim.noise_std}
    for name in SCALARS:
        summary[name] = scalar_summary(posterior, name, tv)
    try:
        summary["num_segments"] = {str(k): float(v) for k, v in
                                   posterior.marginal("num_segments").probabilities().items()}
    except (KeyError, ValueError):
        pass
    bands = {name: band(posterior, name) for name in SERIES}
    for name, b in bands.items():
        entry = {"low": b["low"].tolist(), "median": b["median"].tolist(),
                 "high": b["high"].tolist(), "mean_width": float(np.mean(b["high"] - b["low"]))}
        if name in tv:
            entry["truth"] = np.asarray(tv[name], dtype=float).tolist()
            entry["coverage_90"] = band_coverage(b, tv[name])
        summary[name] = entry
    summary["plots"] = _plots(sim, bands, posterior, tv, output_dir)
    path = os.path.join(output_dir, "composite_cure_summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    log.info("composite_cure report written to %s", output_dir)
    return summary


def _plots(sim: Any, bands: dict, posterior: Any, tv: dict, output_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(sim.times_minutes, dtype=float)
    written = []

    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    ax = axes[0]
    for name, colour, label in (("air_temperature", "tab:grey", "air"),
                                ("mid_temperature", "tab:red", "mid-thickness")):
        b = bands[name]
        ax.fill_between(t, b["low"], b["high"], color=colour, alpha=0.3,
                        label=f"{label} 5–95 % posterior")
        ax.plot(t, b["median"], color=colour, lw=1)
        if name in tv:
            ax.plot(t, tv[name], "k--" if name == "mid_temperature" else "k:", lw=1,
                    label=f"{label} truth")
    if "thermocouples" in tv:
        obs = np.asarray(tv["thermocouples"])
        for i, sensor in enumerate(sim.sensor_names):
            ax.plot(t, obs[i], ".", ms=3, label=f"thermocouple {sensor}")
    ax.set_ylabel("temperature (°C)")
    ax.legend(fontsize=7)
    ax = axes[1]
    b = bands["mid_cure"]
    ax.fill_between(t, b["low"], b["high"], color="tab:blue", alpha=0.3, label="5–95 % posterior")
    ax.plot(t, b["median"], color="tab:blue", lw=1)
    if "mid_cure" in tv:
        ax.plot(t, tv["mid_cure"], "k--", lw=1, label="truth")
    ax.set_ylabel("mid-thickness degree of cure")
    ax.set_xlabel("time (min)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(output_dir, "mid_temperature.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, name in zip(axes.ravel(), SCALARS):
        m = posterior.marginal(name)
        ax.hist(np.asarray(m.values, dtype=float), bins=30, weights=m.weights, density=True,
                color="tab:blue", alpha=0.7)
        if name in tv:
            ax.axvline(float(tv[name]), color="k", ls="--", label="truth")
            ax.legend(fontsize=7)
        ax.set_title(name)
    fig.tight_layout()
    path = os.path.join(output_dir, "parameters.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
