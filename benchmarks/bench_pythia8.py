"""Pythia 8 tau decays under control: the cost of control, and the study's statistics.

1. Throughput: prior traces/s of ``simulator=pythia8_tau`` in the engine's process
   (``transport=inprocess``, ctypes callbacks) and over PPX (ipc, one front-end process),
   against the same decays (and calorimeter) run by Pythia alone with its own random numbers,
   in one process, no control: the ratios are the costs of control. A fourth run draws local
   random numbers but computes every native-stack address, to separate addressing from the
   link. The two links give the same traces bit for bit; the statistics below come from the
   in-process traces.
2. The statistics the Etalumis study gave for Sherpa, here for Pythia, over N prior traces:
   distinct addresses (base and with instance), latent (controlled) variables per trace (mean,
   max), trace types, random numbers per decay and rejection-loop lengths (the most times one
   base address is sampled in one trace).
3. Control does not bias the prior: the decay-mode counts of the controlled traces against
   Pythia's own uncontrolled decays (two-sample chi-square, rare channels pooled).

    python benchmarks/bench_pythia8.py [--traces 10000] [--chi-square-traces 20000]
        [--ppx-traces 1000] [--standalone 200000] [--seed 0] [--json out.json]

Needs the front end (``make pythia8``). Traces are not kept: memory stays flat however long.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import table  # noqa: E402

from etalumis_core import Controller  # noqa: E402
from etalumis_core.progress import Progress  # noqa: E402
from etalumis_core.simulator import run_traces  # noqa: E402
from etalumis_pythia8_adapter import Pythia8TauInProcess, Pythia8TauSimulator  # noqa: E402

SHERPA_LATENTS = 24_000  # latent variables per trace in the published Sherpa study, about


def chi_square(a: np.ndarray, b: np.ndarray, min_expected: float = 5.0) -> dict:
    from scipy import stats

    pooled = (a + b) / (a.sum() + b.sum())
    rare = pooled * min(a.sum(), b.sum()) < min_expected
    ta = np.append(a[~rare], a[rare].sum())
    tb = np.append(b[~rare], b[rare].sum())
    keep = (ta + tb) > 0
    statistic, p, dof, _ = stats.chi2_contingency(np.vstack([ta[keep], tb[keep]]), correction=False)
    return {"chi2": float(statistic), "dof": int(dof), "p_value": float(p),
            "pooled_rare_channels": int(rare.sum())}


def prior_traces_per_s(sim, count: int, seed: int) -> float:
    """Prior traces/s of ``sim`` (the observation drawn by the engine, as in a dataset)."""
    controller = Controller(np.random.default_rng(seed), sample_missing_observations=True)
    start = time.perf_counter()
    with Progress(count, f"{sim!r} prior traces") as bar:
        for _ in run_traces(sim, controller, count, report=bar.update):
            pass
    return count / (time.perf_counter() - start)


def run(traces: int, chi_traces: int, ppx_traces: int, standalone: int, seed: int) -> dict:
    total = max(traces, chi_traces, ppx_traces)
    with Pythia8TauSimulator() as sim:
        ppx_rate = prior_traces_per_s(sim, ppx_traces, seed)
    with Pythia8TauInProcess() as sim:
        n_channels = len(sim.channels)
        channels = np.zeros(n_channels + 1, dtype=np.int64)
        latents, randoms, loops, addresses, bases, types = [], [], [], set(), set(), Counter()
        controller = Controller(np.random.default_rng(seed), sample_missing_observations=True)
        start = time.perf_counter()
        with Progress(total, "pythia8_tau prior traces (in process)") as bar:
            for i, trace in enumerate(run_traces(sim, controller, total, report=bar.update)):
                if i + 1 == ppx_traces:  # the traces PPX ran: the same ones, bit for bit
                    same_rate = ppx_traces / (time.perf_counter() - start)
                values = trace.values_by_name()
                if i < chi_traces:
                    channels[int(values["channel"])] += 1
                if i >= traces:
                    continue
                controlled = trace.controlled_addresses
                latents.append(len(controlled))
                randoms.append(int(values["random_numbers"]))
                addresses.update(controlled)
                per_base = Counter(a.split("__")[0] for a in controlled)
                bases.update(per_base)
                loops.append(max(per_base.values()))
                types[trace.trace_type_hash] += 1
        inprocess_rate = total / (time.perf_counter() - start)
        alone = sim.run_standalone(standalone, seed + 1)
        addressed = sim.run_standalone(standalone, seed + 1, addressed=True)
    alone_counts = np.zeros(n_channels + 1, dtype=np.int64)
    for k, count in alone["channels"].items():
        alone_counts[int(k) if int(k) >= 0 else n_channels] += count
    latents, randoms, loops = (np.asarray(x) for x in (latents, randoms, loops))
    alone_rate = standalone / alone["seconds"]
    addressed_rate = standalone / addressed["seconds"]
    return {
        "traces": traces, "seed": seed,
        "throughput": {"inprocess_traces_per_s": inprocess_rate, "ppx_traces_per_s": ppx_rate,
                       "pythia_alone_decays_per_s": alone_rate,
                       "addressed_decays_per_s": addressed_rate,
                       "inprocess_same_traces_per_s": same_rate,
                       "inprocess_over_ppx": same_rate / ppx_rate,
                       "slowdown_inprocess": alone_rate / inprocess_rate,
                       "slowdown": alone_rate / ppx_rate, "inprocess_traces": total,
                       "ppx_traces": ppx_traces, "standalone_decays": standalone},
        "distinct_base_addresses": len(bases), "distinct_addresses": len(addresses),
        "latents_per_trace": {"mean": float(latents.mean()), "max": int(latents.max()),
                              "median": float(np.median(latents))},
        "random_numbers_per_decay": {"mean": float(randoms.mean()), "min": int(randoms.min()),
                                     "max": int(randoms.max()),
                                     "over_10000": int((randoms > 10_000).sum())},
        "rejection_loop_length": {"mean": float(loops.mean()), "median": float(np.median(loops)),
                                  "p99": float(np.quantile(loops, 0.99)), "max": int(loops.max())},
        "longest_trace_index": int(np.argmax(randoms)),
        "trace_types": len(types),
        "channels_seen": int((channels > 0).sum()),
        "prior_vs_pythia_alone": {"controlled_traces": chi_traces,
                                  "uncontrolled_decays": standalone,
                                  **chi_square(channels, alone_counts)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=10_000, help="traces for the statistics")
    parser.add_argument("--chi-square-traces", type=int, default=20_000)
    parser.add_argument("--ppx-traces", type=int, default=1_000, help="traces timed over PPX")
    parser.add_argument("--standalone", type=int, default=200_000, help="decays by Pythia alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    r = run(args.traces, args.chi_square_traces, args.ppx_traces, args.standalone, args.seed)
    t = r["throughput"]
    table("Pythia 8 tau decays: prior traces/s in process and over PPX (ipc) vs Pythia alone",
          [("traces (decays)/s, in process", t["inprocess_traces_per_s"], None, "controlled"),
           ("  the same traces as PPX, in process", t["inprocess_same_traces_per_s"], None,
            "controlled"),
           ("traces (decays)/s, PPX", t["ppx_traces_per_s"], None, "controlled"),
           ("decays/s, Pythia alone", t["pythia_alone_decays_per_s"], None, "own random numbers"),
           ("decays/s, stack addresses only", t["addressed_decays_per_s"], None,
            "addressing"),
           ("in process / PPX (same traces)", t["inprocess_over_ppx"], None, "x faster"),
           ("cost in process (alone / in process)", t["slowdown_inprocess"], None, "x"),
           ("cost over PPX (alone / PPX)", t["slowdown"], None, "x")])
    print(f"\nstatistics over {r['traces']} prior traces (Sherpa study: ~{SHERPA_LATENTS} latents)")
    for key in ("distinct_base_addresses", "distinct_addresses", "latents_per_trace",
                "random_numbers_per_decay", "rejection_loop_length", "trace_types",
                "channels_seen", "longest_trace_index", "prior_vs_pythia_alone"):
        print(f"  {key:26s} {r[key]}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
