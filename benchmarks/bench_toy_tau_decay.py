"""Prior traces per second of the toy_tau_decay simulator on one core.

Runs the whole forward model (tau momentum, channel, decay kinematics with rejection loops,
pi0/eta decays, calorimeter showers with their Poisson counts and batched position draws, and
the (35, 35, 20) likelihood) under etalumis' prior importance-sampling engine, which records
every trace, and, separately, under ``et.simulate`` (which also draws the observation).

    python benchmarks/bench_toy_tau_decay.py [--traces 2000] [--repeats 3]

Target: at least 200 prior traces per second.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_toy_tau_decay.model import TauDecaySimulator  # noqa: E402

TARGET = 200.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    sim = TauDecaySimulator()
    observed = et.simulate(sim, seed=12345).result["calorimeter"]
    # warm up: phase-space bounds are computed once per channel on first use
    et.infer(sim, observe={"calorimeter": observed}, num_traces=300, seed=0, progress=False)

    rates = []
    for r in range(args.repeats):
        start = time.perf_counter()
        post = et.infer(sim, observe={"calorimeter": observed}, num_traces=args.traces,
                        seed=r + 1, progress=False)
        rates.append(args.traces / (time.perf_counter() - start))
    lengths = [len(t) for t in post.trace_types]
    print(f"importance sampling (prior): {np.median(rates):.0f} traces/s "
          f"(runs: {', '.join(f'{x:.0f}' for x in rates)}; {len(post.trace_types)} trace types, "
          f"{min(lengths)}-{max(lengths)} controlled choices)")

    n = max(args.traces // 4, 100)
    start = time.perf_counter()
    for seed in range(n):
        et.simulate(sim, seed=seed)
    sim_rate = n / (time.perf_counter() - start)
    print(f"et.simulate (also draws the observation): {sim_rate:.0f} traces/s")

    best = float(np.median(rates))
    verdict = "holds" if best >= TARGET else "does NOT hold"
    print(f"target {TARGET:.0f} prior traces/s on one core: {verdict}")


if __name__ == "__main__":
    main()
