"""The study's picture for one tau event: a fast engine's posterior over a long reference run.

For one event drawn from the toy_tau_decay prior (``--event-seed``), the script runs the reference
(SMC from the prior with ``--reference-particles``, far more than the default) and the engine
under test (``--engine`` with ``--option key=value`` pairs, YAML values), then draws, for the
decay channel, px, py, pz and the leading energies, the reference as filled histograms and the
engine as outlines, and reports the agreement: the total variation distance between the two
channel distributions and the (weighted) Kolmogorov-Smirnov distance of each continuous
marginal, with each run's CPU seconds.

    python benchmarks/bench_tau_picture.py --event-seed 3 --engine smc --option num_traces=1000
    python benchmarks/bench_tau_picture.py --engine ic_smc --option num_traces=100 \
        --option network=pkg://etalumis_toy_tau_decay/network/network.pt

Everything runs in this process (one core, threads pinned), so CPU seconds are the whole cost.
It writes ``tau_picture.png`` and ``tau_picture.json`` in ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator, analysis  # noqa: E402
from etalumis_toy_tau_decay.physics import CHANNEL_ASCII_NAMES  # noqa: E402

CONTINUOUS = ("px", "py", "pz", "e_charged_hadrons", "e_photons", "e_visible")
LABELS = {"px": "px (GeV)", "py": "py (GeV)", "pz": "pz (GeV)",
          "e_charged_hadrons": "charged-hadron energy (GeV)", "e_photons": "photon energy (GeV)",
          "e_visible": "visible energy (GeV)"}


def parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs, values read as YAML scalars (never evaluated as code)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option wants key=value, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def run(engine: str, observation: dict, seed: int, options: dict) -> tuple[et.Posterior, float]:
    options = dict(options)
    num_traces = int(options.pop("num_traces", 1000))
    start = time.process_time()
    posterior = et.infer(TauDecaySimulator(), observe=observation, engine=engine,
                         num_traces=num_traces, seed=seed, progress=False, **options)
    return posterior, time.process_time() - start


def weighted_cdf(values: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return np.concatenate([[0.0], cumulative])[np.searchsorted(values[order], grid, side="right")]


def ks_distance(a: et.Marginal, b: et.Marginal) -> float:
    """sup |F_a - F_b| of the weighted empirical distribution functions."""
    va, wa = np.asarray(a.values, float), np.asarray(a.weights, float)
    vb, wb = np.asarray(b.values, float), np.asarray(b.weights, float)
    grid = np.union1d(va, vb)
    return float(np.max(np.abs(weighted_cdf(va, wa, grid) - weighted_cdf(vb, wb, grid))))


def picture(reference: et.Posterior, fast: et.Posterior, truth: dict, label: str,
            path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    axes = axes.ravel()
    p_ref = analysis.channel_probabilities(reference)
    p_fast = analysis.channel_probabilities(fast)
    shown = np.flatnonzero((p_ref > 0.005) | (p_fast > 0.005) |
                           (np.arange(len(p_ref)) == truth["channel"]))
    x = np.arange(len(shown))
    ax = axes[0]
    ax.bar(x, p_ref[shown], color="tab:blue", alpha=0.5, label="reference")
    ax.bar(x, p_fast[shown], fill=False, edgecolor="k", linewidth=1.5,
           label="\n".join(textwrap.wrap(label, 36)))
    ax.set_xticks(x, [CHANNEL_ASCII_NAMES[c] for c in shown], rotation=45, ha="right",
                  fontsize=7)
    ax.axvline(int(np.flatnonzero(shown == truth["channel"])[0]), color="tab:red", ls="--",
               label="truth")
    ax.set_ylabel("posterior probability")
    ax.set_title("decay channel")
    # The spare last panel holds the legend: over the channel bars it would hide them.
    axes[-1].legend(*ax.get_legend_handles_labels(), loc="center", fontsize=9)
    for ax, key in zip(axes[1:], CONTINUOUS):
        ref, mine = reference.marginal(key), fast.marginal(key)
        values = np.concatenate([np.asarray(ref.values, float), np.asarray(mine.values, float)])
        bins = np.linspace(values.min(), values.max() + 1e-9, 41)
        ax.hist(np.asarray(ref.values, float), bins, weights=np.asarray(ref.weights, float),
                density=True, color="tab:blue", alpha=0.5)
        ax.hist(np.asarray(mine.values, float), bins, weights=np.asarray(mine.weights, float),
                density=True, histtype="step", color="k")
        ax.axvline(float(truth[key]), color="tab:red", ls="--")
        ax.set_title(LABELS[key], fontsize=9)
    axes[-1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event-seed", type=int, default=3, help="the event: a prior draw")
    parser.add_argument("--engine", default="smc")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the engine under test (num_traces among them)")
    parser.add_argument("--reference-particles", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("."))
    args = parser.parse_args()
    options = parse_options(args.option)

    truth = et.simulate(TauDecaySimulator(), seed=args.event_seed).result
    observation = {"calorimeter": truth["calorimeter"]}
    print(f"event {args.event_seed}: tau- -> {CHANNEL_ASCII_NAMES[truth['channel']]}, "
          f"px {truth['px']:.3f} py {truth['py']:.3f} pz {truth['pz']:.3f}")
    reference, reference_cpu = run("smc", observation, args.seed + 1,
                                   {"num_traces": args.reference_particles})
    fast, fast_cpu = run(args.engine, observation, args.seed, options)

    p_ref = analysis.channel_probabilities(reference)
    p_fast = analysis.channel_probabilities(fast)
    result = {
        "event_seed": args.event_seed, "true_channel": CHANNEL_ASCII_NAMES[truth["channel"]],
        "engine": args.engine, "options": options,
        "reference": {"particles": args.reference_particles, "cpu_seconds": reference_cpu,
                      "ess": reference.engine_summary.get("ess")},
        "fast": {"cpu_seconds": fast_cpu, "ess": fast.engine_summary.get("ess")},
        "cpu_ratio": reference_cpu / fast_cpu,
        "channel_total_variation": float(0.5 * np.abs(p_ref - p_fast).sum()),
        "ks": {key: ks_distance(reference.marginal(key), fast.marginal(key))
               for key in CONTINUOUS},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    label = f"{args.engine} " + " ".join(f"{k}={v}" for k, v in options.items())
    picture(reference, fast, truth, label.strip(), args.output / "tau_picture.png")
    (args.output / "tau_picture.json").write_text(json.dumps(result, indent=2))
    print(f"reference SMC {args.reference_particles}: {reference_cpu:.0f} CPU-s; "
          f"{label}: {fast_cpu:.1f} CPU-s ({result['cpu_ratio']:.1f}x less)")
    print(f"channel total variation {result['channel_total_variation']:.3f}; KS "
          + ", ".join(f"{k} {v:.3f}" for k, v in result["ks"].items()))
    print(f"wrote {args.output / 'tau_picture.png'} and tau_picture.json")


if __name__ == "__main__":
    main()
