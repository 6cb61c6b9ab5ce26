"""3DCNN-LSTM training throughput: weak scaling over processes, and side by side with pyprob.

1. Weak scaling: the ``distributed`` trainer (gloo, one torch thread per rank) on a
   toy_tau_decay trace dataset with the ``cnn3d_lstm`` proposal, a fixed minibatch per rank,
   on 1 and then 2 processes; prints global training traces/s and the speed-up
   (target: at least 1.8x from 1 to 2 processes).
2. Against pyprob 1.5.0 (``benchmarks/.venv-pyprob``): online training of an LSTM proposal
   network with a 3-D CNN observation embedding at equal sizes (pyprob's
   ``ObserveEmbedding.CNN3D5C`` and ``cnn3d_lstm`` with the same five convolutions, the same
   embedding, LSTM and mixture sizes, the same minibatch) on the same synthetic calorimeter
   model (energy blobs in a voxel grid), one thread each; prints training traces/s and the
   ratio.

    python benchmarks/bench_cnn3d_lstm.py [--only scaling|pyprob] [--steps 30]
        [--per-rank-batch 16] [--grid 20 20 20] [--pyprob-traces 320]

Numbers depend on the machine's load: both halves of a comparison run one after the other in
the same invocation.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import pyprob_available, run_pyprob, single_thread, table  # noqa: E402

SCALING_TARGET = 1.8
SCALING_NETWORK = dict(embedding="cnn3d_lstm", embedding_dim=32, lstm_dim=64,
                       head_hidden_dim=32, mixture_components=3,
                       embedding_options=dict(channels=[[8], [16]], padding=1,
                                              input_transform="log1p"))


# ----------------------------------------------------------------------------------------------
# 1. weak scaling


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scaling_rank(rank: int, world: int, port: int, dataset: str, out: str, steps: int,
                  per_rank: int, queue) -> None:
    import torch
    import torch.distributed as dist

    from etalumis_core.data.dataset import TraceDataset
    from etalumis_core.nn import ProposalNetwork
    from etalumis_core.plugins import embedding_factory
    from etalumis_cnn3d_lstm.distributed import DistributedTrainer

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
    torch.manual_seed(0)
    ds = TraceDataset(dataset)
    net = ProposalNetwork.for_dataset(ds, embeddings=embedding_factory, **SCALING_NETWORK)
    trainer = DistributedTrainer(seed=0, log_interval=steps, checkpoint_interval=10 ** 9,
                                 plot=False, progress=False, num_threads=1)
    # Warm-up (first reads of the shards, allocator), then the timed run.
    trainer.train(net, ds, f"{out}/warm-{world}", steps=3, batch_size=per_rank * world,
                  resume=False)
    start = time.perf_counter()
    result = trainer.train(net, ds, f"{out}/run-{world}", steps=steps,
                           batch_size=per_rank * world, resume=False)
    wall = time.perf_counter() - start
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    queue.put((rank, result.traces, wall, result.wall_time_s))


def weak_scaling(steps: int, per_rank: int, traces: int) -> list:
    import torch.multiprocessing as mp

    from etalumis_core.data import generate_dataset
    from etalumis_toy_tau_decay.model import TauDecaySimulator

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = generate_dataset(TauDecaySimulator(), f"{tmp}/data", traces, seed=0,
                              chunk_size=max(traces // 4, 1), progress=False)
        print(f"dataset: {ds}")
        rates = {}
        for world in (1, 2):
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            port = _free_port()
            procs = [ctx.Process(target=_scaling_rank,
                                 args=(r, world, port, str(ds.path), tmp, steps, per_rank, queue))
                     for r in range(world)]
            for p in procs:
                p.start()
            results = [queue.get(timeout=1800) for _ in procs]
            for p in procs:
                p.join()
            loop_wall = max(r[3] for r in results)
            rates[world] = steps * per_rank * world / loop_wall
            print(f"{world} process(es): {steps} steps of {per_rank} traces per rank in "
                  f"{loop_wall:.1f} s: {rates[world]:.1f} traces/s "
                  f"({rates[world] / world:.1f} per rank)")
        speedup = rates[2] / rates[1]
        verdict = "holds" if speedup >= SCALING_TARGET else "does NOT hold"
        print(f"weak scaling 1 -> 2 processes: {speedup:.2f}x (target {SCALING_TARGET}x: "
              f"{verdict}; {os.cpu_count()} CPUs on this machine, shared)")
        rows.append(("training, 1 process (traces/s)", rates[1], None, "traces/s"))
        rows.append(("training, 2 processes (traces/s)", rates[2], None, "traces/s"))
    return rows


# ----------------------------------------------------------------------------------------------
# 2. against pyprob

# The synthetic calorimeter, written once for both sides: the tau momentum direction (x, y),
# 1-3 showers, each with an energy and a depth, deposited as Gaussian blobs in a voxel grid;
# observed with Normal noise.
MODEL = """
import numpy as np

GRID = tuple(GRID_SHAPE)
_axes = [np.arange(n, dtype=np.float64) for n in GRID]
_mesh = np.meshgrid(*_axes, indexing="ij")


def expected_grid(x, y, energies, depths):
    grid = np.zeros(GRID)
    cx = (0.5 + 0.3 * x) * (GRID[0] - 1)
    cy = (0.5 + 0.3 * y) * (GRID[1] - 1)
    for k, (e, d) in enumerate(zip(energies, depths)):
        cz = d * (GRID[2] - 1)
        r2 = (_mesh[0] - cx - k) ** 2 + (_mesh[1] - cy) ** 2 + (_mesh[2] - cz) ** 2
        blob = np.exp(-0.5 * r2 / 2.0 ** 2)
        grid += e * blob / blob.sum()
    return grid
"""

PYPROB = """
import contextlib, io, json, time
import torch
import pyprob
from pyprob import Model, InferenceNetwork, ObserveEmbedding
from pyprob.distributions import Categorical, Normal, Uniform

torch.set_num_threads(1)


class Calorimeter(Model):
    def forward(self):
        x = float(pyprob.sample(Uniform(-1.0, 1.0), name="x"))
        y = float(pyprob.sample(Uniform(-1.0, 1.0), name="y"))
        n = int(pyprob.sample(Categorical([0.5, 0.3, 0.2]), name="n")) + 1
        energies, depths = [], []
        for _ in range(n):
            energies.append(float(pyprob.sample(Uniform(1.0, 5.0))))
            depths.append(float(pyprob.sample(Uniform(0.2, 0.8))))
        grid = torch.tensor(expected_grid(x, y, energies, depths), dtype=torch.float32)
        pyprob.observe(Normal(grid.reshape(-1), 0.05), name="calorimeter")
        return x


model = Calorimeter()
embeddings = {"calorimeter": {"dim": __EMB__, "embedding": ObserveEmbedding.CNN3D5C,
                              "reshape": [1] + list(GRID)}}
options = dict(inference_network=InferenceNetwork.LSTM, observe_embeddings=embeddings,
               batch_size=__BATCH__, lstm_dim=__LSTM__, proposal_mixture_components=__MIX__)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    model.learn_inference_network(num_traces=2 * __BATCH__, **options)   # builds the layers
    start = time.perf_counter()
    model.learn_inference_network(num_traces=__N__, **options)
    wall = time.perf_counter() - start
print(json.dumps({"traces_per_s": __N__ / wall, "wall": wall}))
"""


def ours_vs_pyprob(grid: list[int], traces: int, batch: int, emb: int, lstm: int,
                   mix: int) -> list:
    import numpy as np
    import torch

    import etalumis_core as et
    from etalumis_core.distributions import Categorical, Normal, Uniform
    from etalumis_core.nn import ProposalNetwork, Trainer
    from etalumis_core.plugins import embedding_factory

    namespace: dict = {"GRID_SHAPE": grid}
    exec(MODEL, namespace)
    expected_grid = namespace["expected_grid"]

    def calorimeter():
        x = et.sample(Uniform(-1.0, 1.0), name="x")
        y = et.sample(Uniform(-1.0, 1.0), name="y")
        n = int(et.sample(Categorical([0.5, 0.3, 0.2]), name="n")) + 1
        energies, depths = [], []
        for _ in range(n):
            energies.append(et.sample(Uniform(1.0, 5.0)))
            depths.append(et.sample(Uniform(0.2, 0.8)))
        grid_values = expected_grid(x, y, energies, depths)
        et.observe(Normal(grid_values, np.full(grid_values.shape, 0.05)), name="calorimeter")
        return x

    sim = et.PythonSimulator(calorimeter, name="calorimeter",
                             observations={"calorimeter": tuple(grid)})
    # pyprob's CNN3D5C: conv 64, 64, pool, conv 128, 128, 128, pool, then a linear layer to
    # the embedding and a 2-layer feedforward: the same here (hidden_dims adds the last two).
    torch.manual_seed(0)
    net = ProposalNetwork.for_simulator(
        sim, embedding="cnn3d_lstm", embeddings=embedding_factory, embedding_dim=emb,
        lstm_dim=lstm, mixture_components=mix, address_embedding_dim=64, sample_embedding_dim=4, distribution_embedding_dim=8,
        embedding_options=dict(channels=[[64, 64], [128, 128, 128]], hidden_dims=[emb, emb]))
    options = dict(plot=False, progress=False, num_threads=1, checkpoint_interval=10 ** 9,
                   log_interval=10 ** 9)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(**options).train(net, sim, f"{tmp}/warm", steps=2, batch_size=batch)
        start = time.perf_counter()
        Trainer(**options).train(net, sim, f"{tmp}/run", num_traces=traces, batch_size=batch)
        ours = traces / (time.perf_counter() - start)
    print(f"etalumis cnn3d_lstm, grid {grid}: {ours:.2f} training traces/s")
    theirs = None
    if pyprob_available():
        code = (MODEL.replace("GRID_SHAPE", repr(list(grid)))
                + PYPROB.replace("__EMB__", str(emb)).replace("__LSTM__", str(lstm))
                .replace("__MIX__", str(mix)).replace("__BATCH__", str(batch))
                .replace("__N__", str(traces)))
        theirs = run_pyprob(code, timeout=3600)["traces_per_s"]
        print(f"pyprob CNN3D5C + LSTM, grid {grid}: {theirs:.2f} training traces/s")
    else:
        print("pyprob not measured: run `make pyprob-venv` to create benchmarks/.venv-pyprob")
    return [(f"online training, grid {'x'.join(map(str, grid))}", ours, theirs, "traces/s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["scaling", "pyprob"], default=None)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per scaling run")
    parser.add_argument("--per-rank-batch", type=int, default=64)
    parser.add_argument("--dataset-traces", type=int, default=512)
    parser.add_argument("--grid", type=int, nargs=3, default=[20, 20, 20],
                        help="voxel grid of the pyprob comparison (at least 20 per side for "
                             "pyprob's five convolutions)")
    parser.add_argument("--pyprob-traces", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--lstm-dim", type=int, default=128)
    parser.add_argument("--mixture-components", type=int, default=5)
    args = parser.parse_args()
    single_thread()
    rows = []
    if args.only in (None, "scaling"):
        rows += weak_scaling(args.steps, args.per_rank_batch, args.dataset_traces)
    if args.only in (None, "pyprob"):
        rows += ours_vs_pyprob(args.grid, args.pyprob_traces, args.batch, args.embedding_dim,
                               args.lstm_dim, args.mixture_components)
    table("3DCNN-LSTM training throughput (one torch thread per process)", rows)


if __name__ == "__main__":
    main()
