"""How often the posterior is right: SMC on many synthetic tau -> pi- pi0 nu events.

For the first ``--events`` events of that channel among the simulator's seeds, the calorimeter
of each is inferred with SMC, and the script reports how often the true channel comes first and
how often the true px, py, pz lie inside the central 95% intervals, with the rank of each truth
in its posterior marginal (uniform ranks mean a calibrated posterior). It runs twice: with the
simulator's own moves of the tau momentum, and without them (generic moves only).

    python benchmarks/bench_tau_calibration.py [--events 20] [--particles 200] [--workers 2]

Each event is one SMC run on one core; events run in parallel on ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator, analysis, physics  # noqa: E402

CHANNEL = physics.channel_index("π⁻ π⁰")
KEYS = ("px", "py", "pz")


def infer_event(item: tuple) -> dict:
    seed, particles, moves, model_moves = item
    sim = TauDecaySimulator()
    truth = et.simulate(sim, seed=seed).result
    start = time.perf_counter()
    post = et.infer(sim, observe={"calorimeter": truth["calorimeter"]}, engine="smc",
                    num_traces=particles, seed=0, moves=moves, model_moves=model_moves,
                    progress=False)
    out = {"seed": seed, "seconds": time.perf_counter() - start,
           "channel_first": int(np.argmax(analysis.channel_probabilities(post))) == CHANNEL}
    for key in KEYS:
        marginal = post.marginal(key)
        values, weights = np.asarray(marginal.values), np.asarray(marginal.weights)
        out[key] = float(weights[values < truth[key]].sum() / weights.sum())
    return out


def report(label: str, results: list[dict]) -> None:
    right = [r for r in results if r["channel_first"]]
    print(f"\n{label}: true channel first in {len(right)}/{len(results)} events, "
          f"{np.mean([r['seconds'] for r in results]):.0f} s per event on one core")
    for key in KEYS:
        ranks = np.array([r[key] for r in results])
        inside = (ranks > 0.025) & (ranks < 0.975)
        inside_right = [0.025 < r[key] < 0.975 for r in right]
        print(f"  {key}: truth inside the 95% interval in {inside.sum()}/{len(results)} events "
              f"({sum(inside_right)}/{len(right)} where the channel is right); ranks "
              f"{' '.join(f'{x:.2f}' for x in np.sort(ranks))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--particles", type=int, default=200)
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    sim = TauDecaySimulator()
    seeds, seed = [], 0
    while len(seeds) < args.events:
        if et.simulate(sim, seed=seed).result["channel"] == CHANNEL:
            seeds.append(seed)
        seed += 1
    print(f"{args.events} tau -> pi- pi0 nu events (seeds {seeds[0]}..{seeds[-1]}), SMC with "
          f"{args.particles} particles, {args.moves} sweeps per round")
    with cf.ProcessPoolExecutor(args.workers) as pool:
        for label, model_moves in (("with the simulator's moves", True),
                                   ("generic moves only", False)):
            items = [(s, args.particles, args.moves, model_moves) for s in seeds]
            report(label, list(pool.map(infer_event, items)))


if __name__ == "__main__":
    main()
