"""The tau-decay report of a Sherpa posterior.

Sherpa's own physics is here: its tau decay table (HADRONS++ SHERPA-DEC, 38 channels in
Sherpa's order, as the 38-way categorical the adapter names ``channel`` draws them) and the
variables a tau analysis reads. The summaries, plots and headline are the core's domain-free
:mod:`etalumis_core.reports`.
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

__all__ = ["CHANNEL_NAMES", "CHANNEL_ASCII_NAMES", "CHANNEL_PROBS", "NUM_CHANNELS",
           "MOMENTUM_NAMES", "report"]

log = logging.getLogger(__name__)

#: (name, ASCII name, branching ratio) of each tau- decay channel, in Sherpa's order; the
#: tau neutrino is listed last.
CHANNELS: tuple[tuple[str, str, float], ...] = (
    ('e⁻ ν̄_e ν', 'e- nu_e~ nu', 0.1784),
    ('μ⁻ ν̄_μ ν', 'mu- nu_mu~ nu', 0.1736),
    ('π⁻ ν', 'pi- nu', 0.1106),
    ('K⁻ ν', 'K- nu', 0.00686),
    ('π⁻ π⁰ ν', 'pi- pi0 nu', 0.2542),
    ('K⁻ K_S ν', 'K- K_S nu', 0.00077),
    ('K⁻ K_L ν', 'K- K_L nu', 0.00077),
    ('π⁻ K_S ν', 'pi- K_S nu', 0.00445),
    ('π⁻ K_L ν', 'pi- K_L nu', 0.00445),
    ('K⁻ π⁰ ν', 'K- pi0 nu', 0.0045),
    ('π⁻ π⁰ π⁰ ν', 'pi- pi0 pi0 nu', 0.0917),
    ('π⁺ π⁻ π⁻ ν', 'pi+ pi- pi- nu', 0.0916),
    ('π⁻ K_S π⁰ ν', 'pi- K_S pi0 nu', 0.00185),
    ('π⁻ K_L π⁰ ν', 'pi- K_L pi0 nu', 0.00185),
    ('K⁻ π⁺ π⁻ ν', 'K- pi+ pi- nu', 0.0033),
    ('K⁻ π⁰ π⁰ ν', 'K- pi0 pi0 nu', 0.00058),
    ('K⁻ K⁺ π⁻ ν', 'K- K+ pi- nu', 0.00155),
    ('K⁻ K_S π⁰ ν', 'K- K_S pi0 nu', 0.000755),
    ('K⁻ K_L π⁰ ν', 'K- K_L pi0 nu', 0.000755),
    ('π⁻ K_S K_L ν', 'pi- K_S K_L nu', 0.00055),
    ('π⁻ K_S K_S ν', 'pi- K_S K_S nu', 0.00024),
    ('π⁻ K_L K_L ν', 'pi- K_L K_L nu', 0.00024),
    ('K⁻ K⁻ K⁺ ν', 'K- K- K+ nu', 3.7e-05),
    ('π⁺ π⁻ π⁻ π⁰ ν', 'pi+ pi- pi- pi0 nu', 0.0425),
    ('π⁻ π⁰ π⁰ π⁰ ν', 'pi- pi0 pi0 pi0 nu', 0.0108),
    ('K⁻ π⁰ π⁰ π⁰ ν', 'K- pi0 pi0 pi0 nu', 0.00038),
    ('K_S π⁻ π⁰ π⁰ ν', 'K_S pi- pi0 pi0 nu', 0.000312),
    ('K_L π⁻ π⁰ π⁰ ν', 'K_L pi- pi0 pi0 nu', 0.000312),
    ('K⁻ K⁺ π⁻ π⁰ ν', 'K- K+ pi- pi0 nu', 0.00042),
    ('π⁻ η ν', 'pi- eta nu', 0.00013),
    ('K⁻ η ν', 'K- eta nu', 0.00027),
    ('π⁻ η η ν', 'pi- eta eta nu', 0.0001),
    ('η π⁻ π⁰ ν', 'eta pi- pi0 nu', 0.00174),
    ('π⁻ π⁻ π⁺ π⁰ π⁰ ν', 'pi- pi- pi+ pi0 pi0 nu', 0.0055),
    ('π⁻ π⁰ π⁰ π⁰ π⁰ ν', 'pi- pi0 pi0 pi0 pi0 nu', 0.00095),
    ('K⁻ π⁰ π⁰ π⁰ π⁰ ν', 'K- pi0 pi0 pi0 pi0 nu', 5e-05),
    ('π⁻ π⁻ π⁺ π⁰ π⁰ π⁰ ν', 'pi- pi- pi+ pi0 pi0 pi0 nu', 0.002748),
    ('π⁻ π⁻ π⁻ π⁺ π⁺ π⁰ ν', 'pi- pi- pi- pi+ pi+ pi0 nu', 0.000181),
)
NUM_CHANNELS = len(CHANNELS)
CHANNEL_NAMES = [name for name, _, _ in CHANNELS]
CHANNEL_ASCII_NAMES = [ascii_name for _, ascii_name, _ in CHANNELS]
# The published ratios sum to 1.000 up to rounding: normalised, they are the categorical's.
CHANNEL_PROBS = np.array([br for _, _, br in CHANNELS]) / sum(br for _, _, br in CHANNELS)

MOMENTUM_NAMES = ("px", "py", "pz")
COMPOSITION_NAMES = ("n_charged_hadrons", "n_neutral_hadrons", "n_neutral_pions", "n_photons",
                     "n_leptons", "n_neutrinos")
ENERGY_NAMES = ("e_tau", "e_visible", "e_invisible", "e_charged_hadrons", "e_neutral_hadrons",
                "e_photons", "e_leptons", "e_calorimeter")


def report(posterior: Any, truth: Any = None, output_dir: str | os.PathLike | None = None, *,
           names: Mapping[str, str] | None = None, observation_name: str = "calorimeter",
           calorimeter_shape: tuple[int, ...] = (35, 35, 20)) -> dict:
    """The decay channel, tau momentum, composition and energies of a posterior over Sherpa
    traces (with the truth where given), returned and, with ``output_dir``, written there as
    ``tau_summary.json`` with PNG plots of the channels, the momentum and the observed
    calorimeter. ``names``: the names used here -> Sherpa's, where they differ
    (``{"e_visible": "visible_energy"}``)."""
    summary = posterior_summary(posterior, truth, category="channel", labels=CHANNEL_NAMES,
                                prior=CHANNEL_PROBS,
                                other_labels={"ascii_name": CHANNEL_ASCII_NAMES},
                                groups={"momentum": MOMENTUM_NAMES,
                                        "composition": COMPOSITION_NAMES,
                                        "energies": ENERGY_NAMES},
                                counts={"composition"}, names=names)
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
    plot_categories(category_probabilities(posterior, "channel", NUM_CHANNELS), CHANNEL_NAMES,
                    plots["channels"], true_index=summary["channel"].get("true_index"),
                    prior=CHANNEL_PROBS, prior_label="prior (branching ratio)",
                    title="τ decay channel (Sherpa)")
    plot_scalars(posterior, MOMENTUM_NAMES, truth_values(truth, names), plots["momentum"],
                 title="τ momentum (Sherpa)", unit="GeV")
    deposits = observed_value(observation_name, truth, posterior)
    if deposits is not None and deposits.size == int(np.prod(calorimeter_shape)):
        plots["calorimeter"] = os.path.join(out, "tau_calorimeter.png")
        plot_projections(deposits.reshape(calorimeter_shape), plots["calorimeter"], unit="GeV",
                         axes=("x bin", "y bin", "z bin"),
                         title=f"calorimeter (total {deposits.sum():.2f} GeV)")
    summary["plots"] = plots
    with open(os.path.join(out, "tau_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, allow_nan=True)
    log.info("Sherpa tau report written to %s", out)
    return summary
