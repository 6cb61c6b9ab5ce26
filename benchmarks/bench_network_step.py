"""CPU per network step of proposing and of scoring, and ``ic_smc`` CPU-seconds, on toy_tau_decay.

A network is trained online for ``--train-seconds`` as in ``bench_ic_smc_tau.py`` (or read from
``--network``, a file this script wrote with ``--save``); then, on truth seed 0 and one core:
the CPU spent in :meth:`ICController.propose` per controlled sample over 100 traces (the best
of five passes), the CPU of :meth:`ICController.score` per controlled sample over the same
traces (best of five), and one ``ic_smc`` run with ``--particles`` particles.

    python benchmarks/bench_network_step.py [--train-seconds 30] [--particles 30] [--save F | --network F]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core.engines.ic import ICController  # noqa: E402
from etalumis_core.nn import ProposalNetwork  # noqa: E402
from etalumis_core.simulator import run_traces  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator  # noqa: E402

from bench_ic_smc_tau import log1p_feedforward, train  # noqa: E402


class TimedController(ICController):
    """Counts the CPU spent proposing and the samples proposed."""

    cpu = 0.0
    steps = 0

    def propose(self, address, distribution, name):
        started = time.process_time()
        try:
            return super().propose(address, distribution, name)
        finally:
            TimedController.cpu += time.process_time() - started
            TimedController.steps += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=30.0)
    parser.add_argument("--particles", type=int, default=30)
    parser.add_argument("--network", help="a network file written with --save (no training)")
    parser.add_argument("--save", help="write the trained network here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.network:
        network = ProposalNetwork.load(args.network,
                                       embeddings={"log1p_feedforward": log1p_feedforward})
    else:
        network = train(args.train_seconds)
        if args.save:
            network.save(args.save)
    observe = {"calorimeter": et.simulate(TauDecaySimulator(), seed=0).result["calorimeter"]}
    propose = []
    for _ in range(5):
        TimedController.cpu, TimedController.steps = 0.0, 0
        controller = TimedController(np.random.default_rng(7), observe, network)
        traces = list(run_traces(TauDecaySimulator(), controller, 100, 3, None))
        propose.append(TimedController.cpu / TimedController.steps)
    steps = sum(len(t.controlled_addresses) for t in traces)
    score = []
    for _ in range(5):
        started = time.process_time()
        for trace in traces:
            controller.score(trace)
        score.append((time.process_time() - started) / steps)
    started = time.process_time()
    post = et.infer(TauDecaySimulator(), observe=observe, engine=et.NetworkGuidedSMC(network),
                    num_traces=args.particles, seed=0, progress=False)
    print(f"propose {min(propose) * 1e3:.3f} ms/step, score {min(score) * 1e3:.3f} ms/step "
          f"({steps} steps in 100 traces); ic_smc {time.process_time() - started:.1f} CPU-s, "
          f"{post.metadata['rounds']} rounds, log evidence {post.log_evidence:.6f}")


if __name__ == "__main__":
    main()
