"""The tau report of a posterior over Pythia tau decays, on the core's report helpers: the decay
channel (labels from Pythia's own decay table, its branching ratios as the prior), the tau
momentum against the truth, and a headline."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

from etalumis_core.reports import (category_probabilities, headline, plot_categories,
                                   plot_scalars, posterior_summary, truth_values)

log = logging.getLogger(__name__)

MOMENTUM = ("px", "py", "pz")


def report(posterior: Any, truth: Any, output_dir: str, channels: Sequence[dict]) -> dict:
    """Write ``tau_report.json``, ``tau_channels.png`` and ``tau_momentum.png`` into
    ``output_dir``; return the summary (with its ``headline``)."""
    os.makedirs(output_dir, exist_ok=True)
    labels = [c["name"] for c in channels]
    prior = [c["branching_ratio"] for c in channels]
    summary = posterior_summary(posterior, truth, category="channel", labels=labels, prior=prior,
                                groups={"momentum": MOMENTUM})
    line = headline("decay", [f"tau- -> {name}" for name in labels], summary["channel"],
                    summary["momentum"], "momentum")
    if line:
        summary["headline"] = line
        log.info("%s", line)
    tv = truth_values(truth)
    plot_categories(category_probabilities(posterior, "channel", len(labels)), labels,
                    os.path.join(output_dir, "tau_channels.png"),
                    true_index=summary["channel"].get("true_index"), prior=prior,
                    prior_label="branching ratio", title="tau- decay channel (Pythia 8)")
    plot_scalars(posterior, MOMENTUM, tv, os.path.join(output_dir, "tau_momentum.png"),
                 title="tau momentum", unit="GeV")
    summary["plots"] = ["tau_channels.png", "tau_momentum.png", "tau_report.json"]
    with open(os.path.join(output_dir, "tau_report.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
