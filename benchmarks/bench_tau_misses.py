"""Which of a calibration run's certain misses are fair: each channel's evidence, side by side.

An engine that names the wrong decay channel with probability near 1 has either met an event
whose data really favour another channel (a fair miss: an exact posterior makes it too, now and
then, and calibration allows for it) or lost the true channel in its search. The two are told
apart by the posterior odds of the two channels, p(truth | y) / p(answer | y) = Z_truth /
Z_answer with Z_c = p(y, channel = c): for each certain miss of an ``etalumis calibrate`` run of
toy_tau_decay (top channel probability at least ``--threshold``, and wrong), the script runs SMC
from the prior *given each of the two channels* (``observe={"channel": c, ...}`` conditions the
latent, so the evidence estimate is Z_c) and reports the odds. The given channel removes the
search between channels, which is the part that fails; what is left is SMC within one channel,
whose evidence estimate is unbiased but, where its moves miss part of the channel's posterior,
far noisier than the error SMC reports from its rounds' weights. So each channel runs
``--replicates`` times with different seeds: Z_c is their mean (still unbiased) and the error of
log Z_c the replicates' spread, which is what the verdicts use. A bias that every replicate
shares (a mode no run finds) does not show in the spread: a verdict that changes with
``--particles`` was not one.

    etalumis calibrate simulator=toy_tau_decay engine=ic_smc num_traces=50 num_events=100 \\
        engine.params.network=pkg://etalumis_toy_tau_decay/network/network.pt \\
        engine.params.stratify=channel output=calib
    python benchmarks/bench_tau_misses.py --calibration calib [--particles 100] [--replicates 3]

Where the truth and the answer differ in the charged hadron's species alone (π⁻ ν and K⁻ ν,
π⁻ π⁰ ν and K⁻ π⁰ ν), it also prints the odds that the pion-kaon swap's ratio gives over the
answer's particles (:func:`swap_log_ratios`; the median over the replicates), far tighter than
the two evidence estimates where every replicate found the answer's posterior.

Before the runs it prints each miss's visible energy by kind (photons; charged and neutral
hadrons), the truth's against the engine's posterior mean: where they agree, the answer splits
or merges particles of one kind (two π⁰ read as one with their photons' energy, three charged
pions as one), which says what move the search lacks. ``--energies-only`` stops there.

Each conditioned run is one process on one core (threads pinned); runs spread over
``--workers`` processes. It writes ``tau_misses.json`` and ``tau_misses.png`` (per miss, the
reference probability of the true channel against the engine's) in ``--output``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core.engines.mh import MHController  # noqa: E402
from etalumis_core.posterior import logsumexp  # noqa: E402
from etalumis_core.simulator import run_trace  # noqa: E402
from etalumis_core.trace import SAMPLE  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator  # noqa: E402
from etalumis_toy_tau_decay.jumps import PARTNERS, ChannelJumps  # noqa: E402
from etalumis_toy_tau_decay.moves import CHANNEL  # noqa: E402
from etalumis_toy_tau_decay.physics import CHANNEL_ASCII_NAMES  # noqa: E402


def certain_misses(calibration: str, threshold: float) -> list[dict]:
    """The events of a calibrate output folder whose top channel has probability at least
    ``threshold`` and is not the truth."""
    paths = sorted(glob.glob(os.path.join(calibration, "events", "event-*.json")))
    if not paths:
        raise SystemExit(f"{calibration}: no events/event-*.json; give the output folder of an "
                         f"`etalumis calibrate simulator=toy_tau_decay ...` run")
    misses = []
    for path in paths:
        with open(path) as f:
            event = json.load(f)
        score = event.get("latents", {}).get("channel")
        if score is None:
            raise SystemExit(f"{path}: no channel score; was this a toy_tau_decay calibration?")
        if score["p_top"] >= threshold and not score["correct"]:
            misses.append({"event": event["event"], "truth_seed": event["truth_seed"],
                           "truth": int(score["truth"]), "answer": int(score["top"]),
                           "engine_p_answer": float(score["p_top"]),
                           "engine_p_truth": float(score["p_true"]),
                           **visible_energies(event["latents"])})
    return misses


def visible_energies(latents: dict) -> dict:
    """The energy of the photons and of the hadrons (charged and neutral: the calorimeter gives
    both the same hadronic shower), in the truth and in the engine's posterior mean, where the
    run scored them."""
    kinds = {"photons": ("e_photons",), "hadrons": ("e_charged_hadrons", "e_neutral_hadrons")}
    out = {}
    for kind, names in kinds.items():
        if all(n in latents for n in names):
            out[kind] = [sum(float(latents[n][k]) for n in names) for k in ("truth", "mean")]
    return out


def print_energies(misses: list[dict]) -> None:
    """Each miss's visible energy by kind, truth against the engine's answer: where they agree,
    the answer splits or merges particles of one kind (two π⁰ read as one, three charged pions
    as one) rather than explaining the energy otherwise."""
    rows = [m for m in misses if "photons" in m and "hadrons" in m]
    if not rows:
        print("no visible energies in the events (calibrate scores them for toy_tau_decay's "
              "default configuration)")
        return
    width = max(len(CHANNEL_ASCII_NAMES[m[k]]) for m in rows for k in ("truth", "answer"))
    print(f"{'event':>5}  {'truth':<{width}} {'engine answer':<{width}} {'photons GeV':>13} "
          f"{'hadrons GeV':>13}   (truth / engine)")
    gaps = []
    for m in rows:
        (pt, pa), (ht, ha) = m["photons"], m["hadrons"]
        gaps.append(max(abs(pt - pa), abs(ht - ha)))
        print(f"{m['event']:>5}  {CHANNEL_ASCII_NAMES[m['truth']]:<{width}} "
              f"{CHANNEL_ASCII_NAMES[m['answer']]:<{width}} {pt:>6.1f} / {pa:<4.1f} "
              f"{ht:>6.1f} / {ha:<4.1f}")
    print(f"the answer's photon and hadron energies lie within {max(gaps):.1f} GeV of the "
          f"truth's (median {np.median(gaps):.1f}) in {len(rows)} misses")


VERDICTS = ("fair miss", "search failure", "undecided")


def verdict(log_odds: float, error: float) -> str:
    """Fair where the data favour the engine's answer by two standard errors, a search failure
    where they favour the truth by as much; more particles decide the rest."""
    if log_odds + 2 * error < 0:
        return VERDICTS[0]
    return VERDICTS[1] if log_odds - 2 * error > 0 else VERDICTS[2]


def channel_evidence(item: tuple) -> dict:
    """log p(y, channel) by SMC from the prior, given the channel: one replicate. Where the
    other channel of the miss is the swap partner of this one, also the swap's log-ratio from
    each particle to it (see :func:`swap_log_ratios`)."""
    truth_seed, channel, particles, seed, partner = item
    simulator = TauDecaySimulator()
    calorimeter = et.simulate(simulator, seed=truth_seed).result["calorimeter"]
    start = time.process_time()
    posterior = et.infer(simulator, observe={"calorimeter": calorimeter, "channel": channel},
                         engine="smc", num_traces=particles, seed=seed, progress=False)
    ratios = (swap_log_ratios(simulator, calorimeter, posterior, channel)
              if PARTNERS.get(channel) == partner else None)
    return {"truth_seed": truth_seed, "channel": channel, "seed": seed,
            "log_evidence": float(posterior.log_evidence),
            "reported_error": float(posterior.metadata["log_evidence_error"]),
            "best_log_likelihood": float(np.max(posterior.log_likelihood)),
            **({"swap_log_odds": logsumexp(ratios) - math.log(len(ratios)),
                "swap_reached": float(np.mean(np.isfinite(ratios)))}
               if ratios is not None else {}),
            "cpu_seconds": time.process_time() - start}


def swap_log_ratios(simulator: TauDecaySimulator, calorimeter: np.ndarray,
                    posterior: et.Posterior, channel: int) -> np.ndarray:
    """The pion-kaon swap's Metropolis-Hastings log-ratio from each particle of ``channel`` (an
    equally weighted SMC posterior given the channel) to the partner channel, -inf where the
    swap cannot move the particle. The swap is a bijection between the two channels' decays
    that keeps every visible particle, so the mean ratio over the posterior of ``channel`` is
    the partner's posterior odds against it, less the partner's decays the swap does not reach
    (whose rejected mass draws the other channel would accept, or whose tau it cannot turn):
    a lower bound. The ratio barely varies where the calorimeter pins the visible momenta, so
    it is far tighter than the difference of two evidence estimates."""
    observations = {"calorimeter": calorimeter}

    def replay(values: dict) -> tuple[float, float]:
        controller = MHController(np.random.default_rng(0), observations)
        controller.previous, controller.overrides, controller.redraw = values, {}, None
        trace = run_trace(simulator, controller, 3)
        return (sum(v.log_prob for v in trace.variables if v.kind is SAMPLE and v.control),
                float(trace.log_likelihood))

    swap = ChannelJumps().swap
    out = np.full(posterior.num_traces, -math.inf)
    for i in range(posterior.num_traces):
        values = {**posterior.trace_values(i), CHANNEL: channel}
        proposal = swap(values)
        if proposal is None:
            continue
        new, log_jacobian = proposal
        (prior, likelihood), (new_prior, new_likelihood) = replay(values), replay(new)
        out[i] = log_jacobian + new_prior - prior + new_likelihood - likelihood
    return out


def pooled(replicates: list[dict]) -> dict:
    """log of the replicates' mean evidence, with the standard error of that mean (delta method
    on the log) from their spread."""
    log_z = np.array([r["log_evidence"] for r in replicates])
    top = log_z.max()
    z = np.exp(log_z - top)
    mean = z.mean()
    error = z.std(ddof=1) / math.sqrt(len(z)) / mean if len(z) > 1 else math.inf
    return {"log_evidence": float(top + math.log(mean)), "error": float(error),
            "replicates": replicates}


def plot(misses: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(misses) + 1.5))
    rows = np.arange(len(misses))
    ax.barh(rows, [m["reference_p_truth"] for m in misses], color="tab:blue", alpha=0.5,
            label="reference (evidence of each channel)")
    ax.plot([m["engine_p_truth"] for m in misses], rows, "kD", markersize=6,
            label="engine")
    ax.set_yticks(rows, [f"event {m['event']}: {CHANNEL_ASCII_NAMES[m['truth']]} "
                         f"(called {CHANNEL_ASCII_NAMES[m['answer']]})" for m in misses],
                  fontsize=8)
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="grey", lw=0.5)
    ax.set_xlabel("p(true channel), between it and the engine's answer")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", required=True, help="an etalumis calibrate output folder")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="top channel probability from which a miss counts as certain")
    parser.add_argument("--particles", type=int, default=100, help="SMC particles per channel")
    parser.add_argument("--replicates", type=int, default=3,
                        help="independent SMC runs per channel (their spread is the error)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=".")
    parser.add_argument("--energies-only", action="store_true",
                        help="print each miss's visible energies by kind and stop (no runs)")
    args = parser.parse_args()

    if args.replicates < 2:
        raise SystemExit("--replicates must be at least 2: their spread is the error")
    misses = certain_misses(args.calibration, args.threshold)
    print(f"{len(misses)} certain misses (top channel p >= {args.threshold}) in {args.calibration}")
    if misses:
        print_energies(misses)
    if args.energies_only:
        return
    items = [(m["truth_seed"], c, args.particles, seed, other) for m in misses
             for c, other in ((m["truth"], None), (m["answer"], m["truth"]))
             for seed in range(args.replicates)]
    by_channel: dict[tuple, list] = {}
    with cf.ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(channel_evidence, items):
            by_channel.setdefault((r["truth_seed"], r["channel"]), []).append(r)
    runs = {key: pooled(replicates) for key, replicates in by_channel.items()}
    print(f"{'event':>5}  {'truth':<18} {'engine answer':<18} {'engine p(truth)':>15} "
          f"{'log odds':>14} {'reference p(truth)':>18}  verdict")
    for m in misses:
        t, a = runs[(m["truth_seed"], m["truth"])], runs[(m["truth_seed"], m["answer"])]
        log_odds = t["log_evidence"] - a["log_evidence"]
        error = math.hypot(t["error"], a["error"])
        m.update(log_odds=log_odds, log_odds_error=error,
                 reference_p_truth=1.0 / (1.0 + math.exp(-log_odds)),
                 runs=[t, a], verdict=verdict(log_odds, error))
        print(f"{m['event']:>5}  {CHANNEL_ASCII_NAMES[m['truth']]:<18} "
              f"{CHANNEL_ASCII_NAMES[m['answer']]:<18} {m['engine_p_truth']:>15.3f} "
              f"{log_odds:>+8.2f} ± {error:.2f} {m['reference_p_truth']:>18.3f}  "
              f"{m['verdict']}")
    for m in misses:
        runs = [r for r in m["runs"][1]["replicates"] if "swap_log_odds" in r]
        if runs:
            swaps = [r["swap_log_odds"] for r in runs]
            # The median: a replicate whose particles of the answer missed its posterior (one
            # far from the data, whose swap fits far better) gives odds of hundreds of nats.
            m["swap_log_odds"] = float(np.median(swaps))
            reached = np.mean([r["swap_reached"] for r in runs])
            spread = max(swaps) - min(swaps)
            print(f"{m['event']:>5}  the swap from {CHANNEL_ASCII_NAMES[m['answer']]} (it moves "
                  f"{reached:.0%} of the particles): log odds at least {m['swap_log_odds']:+.2f} "
                  f"(median of replicates {', '.join(f'{x:+.2f}' for x in swaps)}), p(truth) "
                  f"{1.0 / (1.0 + math.exp(-m['swap_log_odds'])):.3f}"
                  + (f"; the replicates disagree by {spread:.0f} nats, so some run given "
                     f"{CHANNEL_ASCII_NAMES[m['answer']]} missed its posterior: rerun with more "
                     f"--particles" if spread > 3.0 else ""))
    counts = {v: sum(m["verdict"] == v for m in misses) for v in VERDICTS}
    cpu = sum(r["cpu_seconds"] for replicates in by_channel.values() for r in replicates)
    reported = np.median([r["reported_error"] for rs in by_channel.values() for r in rs])
    spread = np.median([np.std([r["log_evidence"] for r in rs], ddof=1)
                        for rs in by_channel.values()])
    print(f"one run's log evidence: SMC reports an error of {reported:.2f} (median), the "
          f"replicates spread by {spread:.2f} (median standard deviation)")
    print(", ".join(f"{v} {n}" for v, n in counts.items())
          + f" of {len(misses)}; {cpu:.0f} CPU-s in {len(items)} conditioned runs")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tau_misses.json").write_text(json.dumps({"calibration": args.calibration,
                                                      "threshold": args.threshold,
                                                      "particles": args.particles,
                                                      "replicates": args.replicates,
                                                      "misses": misses}, indent=1))
    plot(misses, out / "tau_misses.png")
    print(f"wrote {out / 'tau_misses.json'} and {out / 'tau_misses.png'}")


if __name__ == "__main__":
    main()
