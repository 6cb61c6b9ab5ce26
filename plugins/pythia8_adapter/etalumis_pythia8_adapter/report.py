"""The tau report of a posterior over Pythia tau decays: decay-channel probabilities (Pythia's
own decay table), the tau momentum against the truth, and a one-line headline.

It reads a posterior only through ``marginal(name)`` and the truth through ``values_by_name()``,
so it works for any engine's posterior.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

MOMENTUM = ("px", "py", "pz")


def _marginal(posterior: Any, name: str) -> Any | None:
    try:
        return posterior.marginal(name)
    except (KeyError, ValueError):
        return None


def channel_probabilities(posterior: Any, num_channels: int) -> np.ndarray:
    """Posterior probability of each channel of the decay table (last entry: no channel
    matched, which Pythia's table should never leave)."""
    probs = np.zeros(num_channels + 1)
    m = _marginal(posterior, "channel")
    if m is not None:
        index = np.asarray(np.rint(m.values), dtype=np.int64)
        np.add.at(probs, np.where(index < 0, num_channels, index), m.weights)
    return probs


def summarise(posterior: Any, truth: Any, channels: Sequence[dict]) -> dict:
    """A JSON-serialisable summary: the channels by probability, the momentum, the headline."""
    tv = truth.values_by_name() if truth is not None and hasattr(truth, "values_by_name") else dict(truth or {})
    probs = channel_probabilities(posterior, len(channels))
    names = [c["name"] for c in channels] + ["(unmatched)"]
    true_channel = int(np.asarray(tv["channel"])) if "channel" in tv else None
    ranked = [{"index": int(i), "name": names[i], "probability": float(probs[i])}
              for i in np.argsort(-probs) if probs[i] > 0]
    summary: dict[str, Any] = {"channel": {"probabilities": ranked[:10], "true_index": true_channel}}
    if true_channel is not None:
        summary["channel"]["true_name"] = names[true_channel]
        summary["channel"]["true_probability"] = float(probs[true_channel])
        summary["channel"]["true_rank"] = 1 + int(np.sum(probs > probs[true_channel]))
    momentum = {}
    for name in MOMENTUM:
        m = _marginal(posterior, name)
        if m is None:
            continue
        q = m.quantile([0.025, 0.5, 0.975])
        entry = {"mean": float(m.mean), "stddev": float(m.stddev), "q025": float(q[0]),
                 "median": float(q[1]), "q975": float(q[2])}
        if name in tv:
            t = float(np.asarray(tv[name]))
            entry.update(true=t, true_within_95=bool(q[0] <= t <= q[2]))
        momentum[name] = entry
    summary["momentum"] = momentum
    if ranked:
        top = ranked[0]
        headline = f"most probable decay: tau- -> {top['name']} (posterior probability {top['probability']:.2f})"
        if true_channel is not None:
            headline += f"; the true decay is tau- -> {names[true_channel]} (rank {summary['channel']['true_rank']})"
        inside = {k: v["true_within_95"] for k, v in momentum.items() if "true_within_95" in v}
        if inside:
            headline += "\ntrue momentum inside the central 95% interval: " + ", ".join(
                f"{k} {'yes' if v else 'NO'}" for k, v in inside.items())
        summary["headline"] = headline
    return summary


def plot(posterior: Any, summary: dict, channels: Sequence[dict], output_dir: str) -> list[str]:
    """``tau_channels.png`` (bar chart, the true channel marked) and ``tau_momentum.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    probs = channel_probabilities(posterior, len(channels))[:len(channels)]
    shown = [i for i in np.argsort(-probs)[:12] if probs[i] > 0]
    true_channel = summary["channel"].get("true_index")
    fig, ax = plt.subplots(figsize=(8, 4))
    colors = ["tab:red" if i == true_channel else "tab:blue" for i in shown]
    ax.barh(range(len(shown)), [probs[i] for i in shown], color=colors)
    ax.set_yticks(range(len(shown)), [f"{i}: {channels[i]['name']}" for i in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("posterior probability" + (" (red: true decay)" if true_channel is not None else ""))
    ax.set_title("tau- decay channel (Pythia 8 decay table)")
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "tau_channels.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, name in zip(axes, MOMENTUM):
        m = _marginal(posterior, name)
        if m is None:
            continue
        ax.hist(np.asarray(m.values, dtype=float), bins=30, weights=m.weights, color="tab:blue")
        truth = summary["momentum"].get(name, {}).get("true")
        if truth is not None:
            ax.axvline(truth, color="tab:red", label="truth")
            ax.legend(fontsize=7)
        ax.set_xlabel(f"{name} (GeV)")
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "tau_momentum.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def report(posterior: Any, truth: Any, output_dir: str, channels: Sequence[dict]) -> dict:
    """Write ``tau_report.json`` and the plots into ``output_dir``; return the summary."""
    os.makedirs(output_dir, exist_ok=True)
    summary = summarise(posterior, truth, channels)
    summary["plots"] = [os.path.basename(p) for p in plot(posterior, summary, channels, output_dir)]
    with open(os.path.join(output_dir, "tau_report.json"), "w") as f:
        json.dump(summary, f, indent=2)
    summary["plots"].append("tau_report.json")
    if "headline" in summary:
        log.info("%s", summary["headline"])
    return summary
