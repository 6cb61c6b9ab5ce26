"""Network-guided SMC against SMC from the prior on toy_tau_decay events drawn from the prior.

A small proposal network (``--embedding``: the calorimeter's axis projections through 2-D CNNs,
or a log1p feed-forward one; an LSTM over the addresses) is trained online for
``--train-seconds`` (or read from ``--network``; ``--save`` keeps it); then each of ``--events`` events (truth
seeds 0, 1, ...) is inferred by ``smc`` and by ``ic_smc`` with the same number of particles, one
core, and the script prints per event and engine: the true channel, the top channel and its
posterior probability, the probability of the true channel, the engine's ESS, the rounds, the
CPU-seconds (training excluded; it is paid once per simulator) and, for ``ic_smc``, the mean
acceptance of its independence moves over the rounds.

    python benchmarks/bench_ic_smc_tau.py [--events 4] [--particles 200] [--train-seconds 180]
        [--embedding calorimeter_projections|log1p] [--save net.pt | --network net.pt]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core.nn import ProposalNetwork, Trainer  # noqa: E402
from etalumis_cnn3d_lstm import calorimeter_projections  # noqa: E402
from etalumis_toy_tau_decay import TauDecaySimulator, analysis  # noqa: E402


class Log1pEmbedding(nn.Module):
    """Deposit counts squashed by log1p (they span four decades), flattened, then a perceptron."""

    def __init__(self, observation_shapes, embedding_dim=64, hidden_dim=128):
        super().__init__()
        size = int(np.prod(observation_shapes["calorimeter"]))
        self.net = nn.Sequential(nn.Linear(size, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, embedding_dim), nn.ReLU())

    def forward(self, observations):
        x = observations["calorimeter"]
        return self.net(torch.log1p(x.clamp(min=0)).reshape(x.shape[0], -1))


def log1p_feedforward(observation_shapes, embedding_dim, **options):
    return Log1pEmbedding(observation_shapes, embedding_dim, **options)


EMBEDDINGS = {"log1p": (log1p_feedforward, False),
              "calorimeter_projections": (calorimeter_projections, True)}


def train(seconds: float, embedding: str) -> ProposalNetwork:
    spec = et.SimulatorSpec(TauDecaySimulator, name="toy_tau_decay")
    torch.manual_seed(0)
    factory, normalize = EMBEDDINGS[embedding]
    network = ProposalNetwork.for_simulator(
        spec, embedding=factory, normalize_observations=normalize, embedding_dim=64,
        lstm_dim=64, address_embedding_dim=16, sample_embedding_dim=4, head_hidden_dim=64,
        mixture_components=5)
    cpu = time.process_time()
    result = Trainer(lr=1e-3, num_threads=1, progress=False, prescan_traces=200, plot=False,
                     max_seconds=seconds, checkpoint_interval=10 ** 9).train(
        network, spec, tempfile.mkdtemp(), steps=10 ** 6, batch_size=32)
    print(f"network: {result.traces} traces, {time.process_time() - cpu:.0f} CPU-s of training, "
          f"{network}", flush=True)
    return network


EMBEDDINGS_BY_NAME = {"log1p_feedforward": log1p_feedforward,
                      "calorimeter_projections": calorimeter_projections}


def infer(engine, observe: dict, particles: int) -> tuple:
    cpu = time.process_time()
    post = et.infer(TauDecaySimulator(), observe=observe, engine=engine, num_traces=particles,
                    seed=0, progress=False)
    return post, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--particles", type=int, default=200)
    parser.add_argument("--train-seconds", type=float, default=180.0)
    parser.add_argument("--embedding", choices=sorted(EMBEDDINGS), default="calorimeter_projections")
    parser.add_argument("--network", help="a trained network file to use instead of training")
    parser.add_argument("--save", help="write the trained network to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.network:
        network = ProposalNetwork.load(args.network, embeddings=EMBEDDINGS_BY_NAME)
    else:
        network = train(args.train_seconds, args.embedding)
        if args.save:
            network.save(args.save)
    engines = {"smc": "smc", "ic_smc": et.NetworkGuidedSMC(network)}
    print(f"{'event':>5} {'engine':>7} {'true':>5} {'top':>4} {'p(top)':>7} {'p(true)':>8} "
          f"{'ESS':>6} {'rounds':>6} {'CPU-s':>7} {'indep. acc.':>11}")
    for seed in range(args.events):
        truth = et.simulate(TauDecaySimulator(), seed=seed).result
        observe = {"calorimeter": truth["calorimeter"]}
        for label, engine in engines.items():
            post, cpu = infer(engine, observe, args.particles)
            probs = analysis.channel_probabilities(post)
            top = int(np.argmax(probs))
            accepted = [r.get("acceptance_independence") for r in post.metadata["round_stats"]]
            accepted = [a for a in accepted if a is not None]
            print(f"{seed:5d} {label:>7} {truth['channel']:5d} {top:4d} {probs[top]:7.2f} "
                  f"{probs[truth['channel']]:8.2f} {post.ess:6.1f} {post.metadata['rounds']:6d} "
                  f"{cpu:7.1f} {np.mean(accepted) if accepted else float('nan'):11.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
