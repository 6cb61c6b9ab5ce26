"""Does the shipped tau network know what it does not know? Its decay-channel probabilities on
events drawn from the prior, scored as ``etalumis calibrate`` scores a posterior.

For each of the first ``--events`` events of ``etalumis calibrate`` (truth seeds 0, 1, ...),
the network's proposal at the decay channel is read after ``--draws`` draws of what it proposes
before it (the tau momentum) and averaged: q(channel | calorimeter), the network's own answer,
before any simulator run scores it. It prints top-1 accuracy, mean q(true channel) and the
reliability table with its binomial bands. ``--against DIR`` (an ``etalumis calibrate`` output
of the same events) lists the events where that posterior gives the true channel probability 0
and the network does not.

    python benchmarks/bench_tau_network_channel.py [--events 100] [--draws 50] [--against DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core.calibration import _event_path, summarize, summary_lines  # noqa: E402
from etalumis_core.engines.ic import ICController, network_file  # noqa: E402
from etalumis_core.nn import ProposalNetwork  # noqa: E402
from etalumis_core.plugins import embedding_factory  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator, physics  # noqa: E402

NETWORK = "pkg://etalumis_toy_tau_decay/network/network.pt"


class _Reached(Exception):
    """Ends a trace at the channel: what follows it does not change its proposal."""


class ChannelReader(ICController):
    """Proposes from the network up to the channel, records the network's probabilities
    there, and stops the trace."""

    def propose(self, address, distribution, name):
        if name != "channel":
            return super().propose(address, distribution, name)
        with torch.inference_mode():
            proposal = self.network.propose(self._state, address, distribution,
                                            tuple(distribution.batch_shape))
        self.channel_probs.append(np.asarray(proposal.probs, dtype=np.float64))
        raise _Reached


def network_channel(network, seed: int, draws: int) -> tuple[int, np.ndarray]:
    """The true channel of event ``seed`` and the network's q(channel | its calorimeter)."""
    sim = TauDecaySimulator()
    truth = et.simulate(sim, seed=seed)
    reader = ChannelReader(np.random.default_rng(seed), et.observations_of(truth), network)
    reader.channel_probs = []
    for _ in range(draws):
        reader.start_trace()
        try:
            sim.run(reader)
        except _Reached:
            pass
    return int(truth.result["channel"]), np.mean(reader.channel_probs, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--against", help="an `etalumis calibrate` output folder")
    args = parser.parse_args()
    if args.against:
        missing = [seed for seed in range(args.events)
                   if not os.path.isfile(_event_path(args.against, seed))]
        if missing:
            parser.error(f"--against {args.against}: no calibrate result for event(s) "
                         f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}; "
                         f"give the output folder of `etalumis calibrate` over at least "
                         f"{args.events} events")

    torch.set_num_threads(1)
    network = ProposalNetwork.load(network_file(NETWORK), embeddings=embedding_factory)
    start = time.process_time()
    events, q_true = [], {}
    for seed in range(args.events):
        truth, q = network_channel(network, seed, args.draws)
        top = int(np.argmax(q))
        q_true[seed] = float(q[truth])
        events.append({"latents": {"channel": {
            "kind": "discrete", "truth": truth, "top": top, "p_top": float(q[top]),
            "p_true": float(q[truth]), "correct": top == truth}}})
    cpu = time.process_time() - start
    summary = {"engine": "the network's channel proposal", "simulator": "toy_tau_decay",
               "num_events": args.events, "cpu_seconds_per_event": cpu / args.events,
               "confidence": 0.99, "latents": summarize(events, 0.99)}
    print("\n".join(summary_lines(summary)))
    for row in summary["latents"]["channel"]["reliability"]:
        print(f"  p(top) {row['low']:.1f}-{row['high']:.1f}: {row['count']} events, "
              f"predicted {row['mean_predicted']:.3f}, right {row['fraction_correct']:.3f}, "
              f"band {row['band'][0]:.3f}-{row['band'][1]:.3f}")
    if args.against:
        lost = []
        for seed in range(args.events):
            with open(_event_path(args.against, seed)) as f:
                channel = json.load(f)["latents"]["channel"]
            if not channel["correct"] and channel["p_true"] == 0:
                lost.append(seed)
        print(f"\n{args.against}: the true channel given probability 0 in {len(lost)} events"
              + ("; the network's probability for it there:" if lost else ""))
        for seed in lost:
            print(f"  event {seed}: {physics.CHANNELS[events[seed]['latents']['channel']['truth']].ascii_name}, "
                  f"q = {q_true[seed]:.3f}")


if __name__ == "__main__":
    main()
