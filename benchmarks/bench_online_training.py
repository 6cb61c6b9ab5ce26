"""Online training of the toy tau network: traces drawn in the trainer, or streamed from workers.

Trains the shipped network's architecture (``make network``: the calorimeter-projection
embedding, a 128-wide LSTM, one torch thread) online on toy_tau_decay for ``--traces`` traces,
twice, one run after the other: first with every batch drawn in the training process
(``data_workers=0``), then streamed from ``--workers`` simulator processes that draw the next
batches while the network trains on this one. Prints the training traces/s of each and their
ratio, and checks that both runs saw the same batches (equal losses at every step): streaming
changes where the traces are drawn, never which.

    python benchmarks/bench_online_training.py [--traces 9600] [--workers 1]
        [--output outputs/bench_online_training]

On a 2-core machine one worker is the most that helps: the trainer holds the other core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import jsonable, single_thread  # noqa: E402

# The shipped tau network's sizes (Makefile: TAU_NETWORK_TRAINING).
NETWORK = dict(embedding="calorimeter_projections", embedding_dim=128, lstm_dim=128,
               address_embedding_dim=16, head_hidden_dim=32, mixture_components=5)


def train(workers: int, traces: int, batch_size: int, out: Path) -> dict:
    import torch

    from etalumis_core.nn import ProposalNetwork, Trainer
    from etalumis_core.plugins import embedding_factory
    from etalumis_core.simulator import SimulatorSpec
    from etalumis_toy_tau_decay import TauDecaySimulator

    spec = SimulatorSpec(TauDecaySimulator, name="toy_tau_decay")
    built = spec.build()
    try:
        torch.manual_seed(0)
        network = ProposalNetwork.for_simulator(built, embeddings=embedding_factory, **NETWORK)
    finally:
        built.close()
    started = time.perf_counter()
    result = Trainer(seed=0, num_threads=1, data_workers=workers, progress=False,
                     plot=False).train(network, spec, out, num_traces=traces,
                                       batch_size=batch_size, resume=False)
    seconds = time.perf_counter() - started
    return {"workers": workers, "seconds": seconds, "traces": result.traces,
            "traces_per_second": result.traces / seconds, "losses": result.losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=9600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default="outputs/bench_online_training")
    args = parser.parse_args()
    single_thread()
    out = Path(args.output)
    runs = [train(w, args.traces, args.batch_size, out / f"workers_{w}")
            for w in (0, args.workers)]
    inline, streamed = runs
    same = inline["losses"] == streamed["losses"]
    print(f"online training, toy_tau_decay, {args.traces} traces, batch {args.batch_size}")
    for run in runs:
        print(f"  data_workers={run['workers']}: {run['traces_per_second']:7.1f} traces/s "
              f"({run['seconds']:.1f} s)")
    ratio = streamed["traces_per_second"] / inline["traces_per_second"]
    print(f"  streamed / inline: {ratio:.2f}x; same losses at every step: {same}")
    report = {"runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs],
              "ratio": ratio, "same_losses": same}
    (out / "online_training.json").write_text(json.dumps(jsonable(report), indent=2))
    if not same:
        sys.exit("streamed batches differ from those drawn in the trainer")


if __name__ == "__main__":
    main()
