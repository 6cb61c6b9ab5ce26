"""Tau-physics summaries and plots of a posterior over tau-decay traces.

Everything here reads a posterior through its public API (``marginal(name)``) and a ground-truth
trace through ``values_by_name()``, so it works for any engine's posterior. Other simulators of
the same physics (Sherpa over PPX) may call the variables differently: ``names`` maps the names
used here (``px``, ``channel``, ``e_visible``, ...) to theirs, and may be partial.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

import numpy as np

from .physics import CHANNEL_ASCII_NAMES, CHANNEL_NAMES, CHANNEL_PROBS, NUM_CHANNELS

logger = logging.getLogger(__name__)

MOMENTUM_NAMES = ("px", "py", "pz")
COMPOSITION_NAMES = ("n_charged_hadrons", "n_neutral_hadrons", "n_neutral_pions", "n_photons",
                     "n_leptons", "n_neutrinos")
ENERGY_NAMES = ("e_tau", "e_visible", "e_invisible", "e_charged_hadrons", "e_neutral_hadrons",
                "e_photons", "e_leptons", "e_calorimeter")


def _truth_values(truth: Any, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    if truth is None:
        return {}
    values = dict(truth) if isinstance(truth, Mapping) else truth.values_by_name()
    for ours, theirs in (names or {}).items():
        if theirs in values:
            values[ours] = values[theirs]
    return values


class _Renamed:
    """A posterior whose marginals are looked up under the simulator's own names."""

    def __init__(self, posterior: Any, names: Mapping[str, str]) -> None:
        self._posterior = posterior
        self._names = dict(names)

    def marginal(self, name: str) -> Any:
        return self._posterior.marginal(self._names.get(name, name))

    def __getattr__(self, item: str) -> Any:
        return getattr(self._posterior, item)


def _renamed(posterior: Any, names: Mapping[str, str] | None) -> Any:
    return _Renamed(posterior, names) if names else posterior


def _marginal(posterior: Any, name: str) -> Any | None:
    try:
        return posterior.marginal(name)
    except (KeyError, ValueError):
        return None


def _number(x: Any) -> float | int | None:
    if x is None:
        return None
    x = float(np.asarray(x))
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x


def channel_probabilities(posterior: Any, names: Mapping[str, str] | None = None) -> np.ndarray:
    """Posterior probability of each of the 38 channels (zeros where no trace has it)."""
    probs = np.zeros(NUM_CHANNELS)
    m = _marginal(_renamed(posterior, names), "channel")
    if m is not None:
        np.add.at(probs, np.asarray(m.values, dtype=np.int64), m.weights)
    return probs


def continuous_summary(posterior: Any, name: str, truth: Mapping[str, Any]) -> dict | None:
    m = _marginal(posterior, name)
    if m is None:
        return None
    q = m.quantile([0.025, 0.05, 0.5, 0.95, 0.975])
    out = {"mean": float(m.mean), "stddev": float(m.stddev), "q025": float(q[0]),
           "q05": float(q[1]), "median": float(q[2]), "q95": float(q[3]), "q975": float(q[4]),
           "ess": float(m.ess)}
    if name in truth:
        t = float(np.asarray(truth[name]))
        out["true"] = t
        out["true_within_90"] = bool(q[1] <= t <= q[3])
        out["true_within_95"] = bool(q[0] <= t <= q[4])
        out["pull"] = (out["mean"] - t) / out["stddev"] if out["stddev"] > 0 else None
    return out


def discrete_summary(posterior: Any, name: str, truth: Mapping[str, Any]) -> dict | None:
    m = _marginal(posterior, name)
    if m is None:
        return None
    table: dict[int, float] = {}
    for v, w in zip(np.rint(m.values).astype(int).tolist(), m.weights.tolist()):
        table[v] = table.get(v, 0.0) + w
    out = {"mean": float(m.mean),
           "probabilities": {str(k): table[k] for k in sorted(table)},
           "mode": int(max(table, key=table.get))}
    if name in truth:
        out["true"] = _number(truth[name])
    return out


def summarise(posterior: Any, truth: Any = None, names: Mapping[str, str] | None = None) -> dict:
    """A JSON-serialisable summary: channels, momentum, composition, energies (with truth).
    ``names``: our variable names -> the simulator's, where they differ."""
    posterior = _renamed(posterior, names)
    tv = _truth_values(truth, names)
    probs = channel_probabilities(posterior)
    order = np.argsort(-probs)
    true_channel = _number(tv.get("channel")) if "channel" in tv else None
    channels = [{"index": int(i), "name": CHANNEL_NAMES[i], "ascii_name": CHANNEL_ASCII_NAMES[i],
                 "probability": float(probs[i]), "prior": float(CHANNEL_PROBS[i])}
                for i in order if probs[i] > 0.0]
    out: dict[str, Any] = {
        "num_traces": int(getattr(posterior, "num_traces", 0)),
        "ess": float(getattr(posterior, "ess", float("nan"))),
        "channel": {
            "map_index": int(order[0]), "map_name": CHANNEL_NAMES[int(order[0])],
            "probabilities": channels,
        },
        "momentum": {}, "composition": {}, "energies": {},
    }
    if true_channel is not None:
        out["channel"].update(
            true_index=true_channel, true_name=CHANNEL_NAMES[true_channel],
            true_probability=float(probs[true_channel]),
            true_rank=int(np.where(order == true_channel)[0][0]) + 1)
    for name in MOMENTUM_NAMES:
        if (s := continuous_summary(posterior, name, tv)) is not None:
            out["momentum"][name] = s
    for name in COMPOSITION_NAMES:
        if (s := discrete_summary(posterior, name, tv)) is not None:
            out["composition"][name] = s
    for name in ENERGY_NAMES:
        if (s := continuous_summary(posterior, name, tv)) is not None:
            out["energies"][name] = s
    return out


def observed_calorimeter(truth: Any, posterior: Any = None) -> np.ndarray | None:
    """The calorimeter of the true event: the simulated deposits in the truth trace's result
    (noise-free, the usual observation), else its observed value, else an observation the
    engine recorded in the posterior's metadata."""
    if truth is not None and not isinstance(truth, Mapping):
        result = getattr(truth, "result", None)
        if isinstance(result, Mapping) and "calorimeter" in result:
            return np.asarray(result["calorimeter"], dtype=float)
        for v in truth.observations():
            if v.name == "calorimeter" and v.value is not None:
                return np.asarray(v.value, dtype=float)
    if isinstance(truth, Mapping) and "calorimeter" in truth:
        return np.asarray(truth["calorimeter"], dtype=float)
    meta = getattr(posterior, "metadata", None) or {}
    obs = meta.get("observations") if isinstance(meta, Mapping) else None
    if isinstance(obs, Mapping) and "calorimeter" in obs:
        return np.asarray(obs["calorimeter"], dtype=float)
    return None


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_channels(probs: np.ndarray, true_channel: int | None, path: str) -> None:
    """Posterior over channels on a log scale, the prior beside it, the true channel in red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4.5))
    x = np.arange(NUM_CHANNELS)
    floor = 1e-6
    colours = ["tab:blue"] * NUM_CHANNELS
    if true_channel is not None:
        colours[true_channel] = "tab:red"
    ax.bar(x, np.maximum(probs, floor), color=colours, label="posterior")
    ax.step(x, CHANNEL_PROBS, where="mid", color="grey", lw=1, label="prior (branching ratio)")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xticks(x)
    ax.set_xticklabels(CHANNEL_NAMES, rotation=90, fontsize=7)
    ax.set_ylabel("probability")
    title = "τ decay channel"
    if true_channel is not None:
        title += f" (true: {CHANNEL_NAMES[true_channel]}, red)"
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_momentum(posterior: Any, truth: Mapping[str, Any], path: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, name in zip(axes, MOMENTUM_NAMES):
        m = _marginal(posterior, name)
        if m is not None:
            ax.hist(m.values, bins=40, weights=m.weights, density=True, color="tab:blue",
                    alpha=0.7, label="posterior")
        if name in truth:
            ax.axvline(float(truth[name]), color="tab:red", lw=2, label="true")
        ax.set_xlabel(f"{name} [GeV]")
        ax.legend(fontsize=8)
    fig.suptitle("τ momentum")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_calorimeter(deposits: np.ndarray, path: str,
                     extent: tuple[float, ...] = (-3.0, 3.0, -3.0, 3.0, 4.0, 15.0)) -> None:
    """x-y, x-z and y-z sums of a (35, 35, 20) calorimeter."""
    plt = _pyplot()
    x0, x1, y0, y1, z0, z1 = extent
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    views = [(deposits.sum(axis=2).T, (x0, x1, y0, y1), "x", "y"),
             (deposits.sum(axis=1).T, (x0, x1, z0, z1), "x", "z"),
             (deposits.sum(axis=0).T, (y0, y1, z0, z1), "y", "z")]
    for ax, (img, ext, a, b) in zip(axes, views):
        im = ax.imshow(img, origin="lower", extent=ext, aspect="auto", cmap="viridis")
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.set_title(f"{a}-{b} projection")
        fig.colorbar(im, ax=ax, label="GeV")
    fig.suptitle(f"calorimeter (total {deposits.sum():.2f} GeV)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(posterior: Any, truth: Any = None, output_dir: str | os.PathLike | None = None,
           observation: np.ndarray | None = None, names: Mapping[str, str] | None = None) -> dict:
    """Summaries (returned, and written as ``tau_summary.json``) and PNG plots in ``output_dir``.

    ``observation``: the observed calorimeter to draw; by default the true event's.
    ``names``: our variable names -> the simulator's, where they differ.
    """
    summary = summarise(posterior, truth, names)
    channel = summary["channel"]
    if channel.get("probabilities"):
        top = channel["probabilities"][0]
        summary["headline"] = (f"most probable decay: tau- -> {top['ascii_name']} "
                               f"(posterior probability {top['probability']:.2f})")
        if channel.get("true_index") is not None:
            summary["headline"] += (f"; the true decay is tau- -> "
                                    f"{CHANNEL_ASCII_NAMES[channel['true_index']]}")
        inside = {k: v["true_within_95"] for k, v in summary.get("momentum", {}).items()
                  if v and "true_within_95" in v}
        if inside:
            summary["headline"] += ("\ntrue momentum inside the central 95% interval: "
                                    + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                for k, v in inside.items()))
    posterior = _renamed(posterior, names)
    if output_dir is None:
        return summary
    out = os.fspath(output_dir)
    os.makedirs(out, exist_ok=True)
    tv = _truth_values(truth, names)
    true_channel = summary["channel"].get("true_index")
    plots = {}
    path = os.path.join(out, "tau_channels.png")
    plot_channels(channel_probabilities(posterior), true_channel, path)
    plots["channels"] = path
    path = os.path.join(out, "tau_momentum.png")
    plot_momentum(posterior, tv, path)
    plots["momentum"] = path
    deposits = observation if observation is not None else observed_calorimeter(truth, posterior)
    if deposits is not None:
        deposits = np.asarray(deposits, dtype=float)
    if deposits is not None and deposits.shape == (35, 35, 20):
        path = os.path.join(out, "tau_calorimeter.png")
        plot_calorimeter(deposits, path)
        plots["calorimeter"] = path
    summary["plots"] = plots
    with open(os.path.join(out, "tau_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, allow_nan=True)
    logger.info("tau-decay report written to %s", out)
    return summary
