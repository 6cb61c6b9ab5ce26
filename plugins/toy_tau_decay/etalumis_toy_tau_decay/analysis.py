"""Tau-physics summaries and plots of a posterior over tau-decay traces.

The physics is here (the 38 channels with their names and branching ratios, which variables
are momentum, composition and energies, the calorimeter); the summaries, plots and headline
are the core's domain-free :mod:`etalumis_core.reports`, so they work for any engine's
posterior. ``names`` maps the names used here (``px``, ``channel``, ``e_visible``, ...) to a
simulator's own, where they differ, and may be partial.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

import numpy as np

from etalumis_core.reports import (category_probabilities, headline, observed_value,
                                   plot_categories, plot_projections, plot_scalars,
                                   posterior_summary, renamed, truth_values)

from .physics import CHANNEL_ASCII_NAMES, CHANNEL_NAMES, CHANNEL_PROBS, NUM_CHANNELS

logger = logging.getLogger(__name__)

MOMENTUM_NAMES = ("px", "py", "pz")
COMPOSITION_NAMES = ("n_charged_hadrons", "n_neutral_hadrons", "n_neutral_pions", "n_photons",
                     "n_leptons", "n_neutrinos")
ENERGY_NAMES = ("e_tau", "e_visible", "e_invisible", "e_charged_hadrons", "e_neutral_hadrons",
                "e_photons", "e_leptons", "e_calorimeter")
CALORIMETER_SHAPE = (35, 35, 20)
CALORIMETER_EXTENT = (-3.0, 3.0, -3.0, 3.0, 4.0, 15.0)   # x, y, z ranges (the default geometry)
DEPOSIT_GEV = 0.005   # the energy of one deposit (the calorimeter's quantum)


def channel_probabilities(posterior: Any, names: Mapping[str, str] | None = None) -> np.ndarray:
    """Posterior probability of each of the 38 channels (zeros where no trace has it)."""
    return category_probabilities(renamed(posterior, names), "channel", NUM_CHANNELS)


def summarise(posterior: Any, truth: Any = None, names: Mapping[str, str] | None = None) -> dict:
    """A JSON-serialisable summary: channels, momentum, composition, energies (with truth).
    ``names``: our variable names -> the simulator's, where they differ."""
    return posterior_summary(posterior, truth, category="channel", labels=CHANNEL_NAMES,
                             prior=CHANNEL_PROBS, other_labels={"ascii_name": CHANNEL_ASCII_NAMES},
                             groups={"momentum": MOMENTUM_NAMES, "composition": COMPOSITION_NAMES,
                                     "energies": ENERGY_NAMES},
                             counts={"composition"}, names=names)


def calorimeter_labels(observation: np.ndarray) -> dict[str, str]:
    """Unit and title of a calorimeter plot. Under the exact likelihood the observation is the
    number of 5 MeV deposits per voxel (integers); under the Normal ones it is GeV."""
    total = float(np.sum(observation))
    if np.all(np.mod(observation, 1.0) == 0.0):
        return {"unit": "5 MeV deposits",
                "title": f"calorimeter ({total:.0f} deposits, {total * DEPOSIT_GEV:.2f} GeV)"}
    return {"unit": "GeV", "title": f"calorimeter (total {total:.2f} GeV)"}


def report(posterior: Any, truth: Any = None, output_dir: str | os.PathLike | None = None,
           observation: np.ndarray | None = None, names: Mapping[str, str] | None = None) -> dict:
    """Summaries (returned, and written as ``tau_summary.json``) and PNG plots in ``output_dir``.

    ``observation``: the observed calorimeter to draw; by default the true event's.
    ``names``: our variable names -> the simulator's, where they differ.
    """
    summary = summarise(posterior, truth, names)
    line = headline("decay", [f"tau- -> {name}" for name in CHANNEL_ASCII_NAMES],
                    summary["channel"], summary["momentum"], "momentum")
    if line is not None:
        summary["headline"] = line
    if output_dir is None:
        return summary
    out = os.fspath(output_dir)
    os.makedirs(out, exist_ok=True)
    posterior = renamed(posterior, names)
    plots = {"channels": os.path.join(out, "tau_channels.png"),
             "momentum": os.path.join(out, "tau_momentum.png")}
    plot_categories(channel_probabilities(posterior), CHANNEL_NAMES, plots["channels"],
                    true_index=summary["channel"].get("true_index"), prior=CHANNEL_PROBS,
                    prior_label="prior (branching ratio)", title="τ decay channel")
    plot_scalars(posterior, MOMENTUM_NAMES, truth_values(truth, names), plots["momentum"],
                 title="τ momentum", unit="GeV")
    if observation is None:
        observation = observed_value("calorimeter", truth, posterior)
    if observation is not None and np.shape(observation) == CALORIMETER_SHAPE:
        plots["calorimeter"] = os.path.join(out, "tau_calorimeter.png")
        plot_projections(observation, plots["calorimeter"], extent=CALORIMETER_EXTENT,
                         **calorimeter_labels(observation))
    summary["plots"] = plots
    with open(os.path.join(out, "tau_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, allow_nan=True)
    logger.info("tau-decay report written to %s", out)
    return summary
