"""Network-guided SMC against SMC from the prior, over tau events drawn from the prior.

Both engines are calibrated (``etalumis_core.calibrate``) on the same ``--events`` toy_tau_decay
events (truth seeds ``--event-seed``, +1, ...; every decay channel, the observation drawn through the model's
own likelihood): ``smc`` from the prior with ``--smc-particles`` (the default job's size) and
``ic_smc`` with ``--ic-particles``, started from the network that ships with the plugin (with
``--stratify``, its population stratified by decay channel: ``stratify=channel``). The
script prints, for each, what the calibration measures (channel top-1, mean probability of the
true channel, how often a channel called at p >= 0.99 is right, 95 % interval coverage of px,
py, pz, CPU-seconds per event), then the event-by-event difference in the probability of the
true channel with its standard error, the events only one engine names right, the ratio of
CPU-seconds per event, and where each engine's warnings single out the events to doubt.

    python benchmarks/bench_tau_engines.py [--events 100] [--event-seed 0] [--smc-particles 1000] \
        [--ic-particles 50] [--stratify] [--workers 2] [--output bench_tau_engines]

Events run ``--workers`` at a time, each on one core. At the defaults the ``smc`` half costs
about 160 CPU-seconds per event on the 2-core machine of README's table (2.2 hours on its two
cores; 540 on a slower one), the ``ic_smc`` half about 10 (9 minutes), both before the jumps
between channels; with them about 450 and 30 on a slower 2-core machine.
Each half writes its calibration under ``OUTPUT/smc`` and ``OUTPUT/ic_smc`` and resumes there
if the script is run again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core.calibration import summary_lines  # noqa: E402

NETWORK = "pkg://etalumis_toy_tau_decay/network/network.pt"
MOMENTA = ("px", "py", "pz")


def calibrated_events(output: Path) -> dict[int, dict]:
    """Each event's scores as ``calibrate`` wrote them, by event index."""
    events = {}
    for path in sorted((output / "events").glob("event-*.json")):
        with open(path) as f:
            score = json.load(f)
        events[score["event"]] = score
    return events


def engine_row(events: list[dict]) -> dict:
    channel = [e["latents"]["channel"] for e in events]
    sure = [c for c in channel if c["p_top"] >= 0.99]
    return {"top1": np.mean([c["correct"] for c in channel]),
            "p_true": np.mean([c["p_true"] for c in channel]),
            "sure_right": sum(c["correct"] for c in sure), "sure": len(sure),
            "coverage": [np.mean([e["latents"][k]["covered"]["0.95"] for e in events])
                         for k in MOMENTA],
            "cpu": np.mean([e["cpu_seconds"] for e in events])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--event-seed", type=int, default=0, help="truth seed of the first event")
    parser.add_argument("--smc-particles", type=int, default=1000)
    parser.add_argument("--ic-particles", type=int, default=50)
    parser.add_argument("--stratify", action="store_true",
                        help="stratify ic_smc's population by decay channel")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default="bench_tau_engines")
    args = parser.parse_args()

    runs = {"smc": {"num_traces": args.smc_particles},
            "ic_smc": {"num_traces": args.ic_particles, "network": NETWORK,
                       **({"stratify": "channel"} if args.stratify else {})}}
    rows, events, summaries = {}, {}, {}
    for engine, options in runs.items():
        output = Path(args.output) / engine
        print(f"== {engine} with {options['num_traces']} particles on {args.events} events "
              f"({output})", flush=True)
        summaries[engine] = et.calibrate(
            "toy_tau_decay", engine=engine, num_events=args.events, event_seed=args.event_seed,
            output_dir=output, executor="process", executor_options={"num_workers": args.workers}, **options)
        events[engine] = calibrated_events(output)
        rows[engine] = engine_row([events[engine][i] for i in range(args.events)])

    print(f"\n{'':8} {'top-1':>6} {'p(true)':>8} {'p>=0.99 right':>14} "
          f"{'95% px py pz':>16} {'CPU-s/event':>12}")
    for engine, r in rows.items():
        print(f"{engine:8} {r['top1']:6.2f} {r['p_true']:8.3f} "
              f"{r['sure_right']:>6d} of {r['sure']:<4d} "
              f"{' '.join(f'{c:.2f}' for c in r['coverage']):>16} {r['cpu']:12.1f}")

    print("\nchannel probabilities against calibrate's reliability band, and where the engine "
          "warned:")
    for engine, summary in summaries.items():
        lines = summary_lines(summary)
        first = next(i for i, line in enumerate(lines) if line.startswith("  channel:"))
        print(f"{engine:8}" + lines[first][len("  channel:"):])
        for line in lines[first + 1:]:
            if not line.startswith("    where"):
                break
            print(f"{'':6}{line.strip()}")

    indices = range(args.events)
    channel = {e: [events[e][i]["latents"]["channel"] for i in indices] for e in runs}
    difference = np.array([b["p_true"] - a["p_true"]
                           for a, b in zip(channel["smc"], channel["ic_smc"])])
    print(f"\np(true channel), ic_smc - smc, event by event: {difference.mean():+.3f} "
          f"± {difference.std(ddof=1) / np.sqrt(len(difference)):.3f} (standard error)")
    for engine, other in (("smc", "ic_smc"), ("ic_smc", "smc")):
        only = [args.event_seed + i for i, a, b in zip(indices, channel[engine], channel[other])
                if a["correct"] and not b["correct"]]
        print(f"named right by {engine} alone: {len(only)} events, truth seeds {only}")
    print(f"CPU-seconds per event, smc / ic_smc: "
          f"{rows['smc']['cpu'] / rows['ic_smc']['cpu']:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
