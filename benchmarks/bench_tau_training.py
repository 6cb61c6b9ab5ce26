"""Training the toy tau proposal network on one core: time to a validation loss, side by side.

One fixed set of toy_tau_decay traces (the exact Poisson calorimeter, 35 x 35 x 20) is drawn
from the prior once; the last ``--validation-traces`` of them are held out. Three networks
with the same LSTM, address/sample/distribution embeddings and proposal heads (pyprob's sizes:
observation embedding 256, LSTM 512, 10 mixture components), Adam at 1e-3, minibatches of
``--batch-size``, one torch thread, train on it for ``--seconds`` of training time each, one
after the other:

(a) etalumis, ``calorimeter_projections`` (the grid's axis projections through 2-D CNNs);
(b) etalumis, ``cnn3d_lstm`` with pyprob's CNN3D5C sizes (five 3-D convolutions, then three
    linear layers), on the standardised grid as published;
(c) pyprob 1.5.0's LSTM inference network with ``ObserveEmbedding.CNN3D5C``
    (``benchmarks/.venv-pyprob``), fed the same traces: a pyprob model replays each stored
    trace (every sample site returns its stored value, the calorimeter is observed with its
    stored counts), and pyprob's own ``_polymorph``/``_loss`` and optimizer train on them.
    pyprob's traces are built outside its clock, in memory, so its data costs nothing.

Every ``--validation-every`` seconds of training each run's loss on the held-out traces is
measured (the clock stops meanwhile). Prints training traces/s of each, the ratio
projections/pyprob, and the time-to-validation-loss ratio: the training time each run needs to
reach the best validation loss the pyprob run reached (interpolated between validation points)
and the loss of the prior as the proposal, for scale. Writes ``tau_training.json`` and
``tau_training.png`` (validation loss against training seconds) to ``--output``.

    python benchmarks/bench_tau_training.py [--train-traces 12000] [--validation-traces 256]
        [--seconds 150] [--validation-every 30] [--batch-size 64] [--skip-pyprob]
        [--output outputs/bench_tau_training]

Numbers depend on the machine's load: the runs follow one another in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from harness import jsonable, pyprob_available, run_pyprob, single_thread  # noqa: E402

# Sizes of pyprob's LSTM inference network (and of the cnn3d_lstm proposal config).
NETWORK = dict(embedding_dim=256, lstm_dim=512, lstm_depth=1, address_embedding_dim=64,
               sample_embedding_dim=4, distribution_embedding_dim=8, head_hidden_dim=64,
               mixture_components=10)
RUNS = {
    "calorimeter_projections": dict(embedding="calorimeter_projections",
                                    embedding_options={}),
    # pyprob's CNN3D5C: conv 64, 64, pool, 128, 128, 128, pool, a linear layer to the
    # embedding, then its two-layer feedforward (hidden_dims).
    "cnn3d_lstm": dict(embedding="cnn3d_lstm",
                       embedding_options=dict(channels=[[64, 64], [128, 128, 128]],
                                              hidden_dims=[256, 256])),
}
LR = 1e-3


# ----------------------------------------------------------------------------------------------
# The traces


def make_traces(directory: str, train: int, validation: int, seed: int) -> tuple:
    """The dataset (validation traces last) and its generation rate (prior traces/s,
    including HDF5 writing)."""
    from etalumis_core.data import generate_dataset
    from etalumis_toy_tau_decay.model import TauDecaySimulator

    start = time.perf_counter()
    dataset = generate_dataset(TauDecaySimulator(), f"{directory}/data", train + validation,
                               seed=seed, chunk_size=2000, progress=False)
    rate = (train + validation) / (time.perf_counter() - start)
    return dataset, rate


def export_for_pyprob(dataset, path: str) -> None:
    """Every trace of ``dataset`` in a form pyprob's side replays: the calorimeter's non-empty
    voxels, and per controlled sample its address, distribution and value."""
    records = dataset.records(np.arange(len(dataset)))
    index, counts, offsets, samples = [], [], [0], []
    for record in records:
        grid = record.observations["calorimeter"].reshape(-1)
        nonzero = np.flatnonzero(grid)
        index.append(nonzero.astype(np.int32))
        counts.append(grid[nonzero].astype(np.float32))
        offsets.append(offsets[-1] + nonzero.size)
        samples.append([[s.address, s.dist_name, float(s.stats[0, 2]), float(s.stats[0, 3]),
                         int(s.support_size), float(s.value[0])] for s in record.samples])
    np.savez(path, index=np.concatenate(index), counts=np.concatenate(counts),
             offsets=np.asarray(offsets, dtype=np.int64),
             shape=np.asarray(dataset.observation_shapes["calorimeter"]),
             samples=np.asarray(json.dumps(samples)))


# ----------------------------------------------------------------------------------------------
# etalumis


def timed_trainer(seconds: float, every: float):
    """The core Trainer, run for ``seconds`` of training time, validating every ``every``
    seconds of it (validation time is left out of the clock)."""
    from etalumis_core.nn import Trainer

    class TimedTrainer(Trainer):
        def prepare(self) -> None:
            self.started = None
            self.paused = 0.0
            self.curve: list[tuple[float, int, float]] = []

        def clock(self) -> float:
            return 0.0 if self.started is None else time.perf_counter() - self.started - self.paused

        def train_step(self, batch):
            if self.started is None:
                self.started = time.perf_counter()
            return super().train_step(batch)

        def validation_loss(self, batch) -> float:
            now = self.clock()
            if self.curve and now < len(self.curve) * every and now <= seconds:
                return math.nan
            begin = time.perf_counter()
            loss = super().validation_loss(batch)
            self.paused += time.perf_counter() - begin
            self.curve.append((now, self.step * self.batch_size, loss))
            return loss

        def should_stop(self, elapsed_s: float) -> bool:
            return self.clock() > seconds

    return TimedTrainer


def train_etalumis(name: str, dataset, args, out: str) -> dict:
    import torch

    from etalumis_core.nn import ProposalNetwork
    from etalumis_core.plugins import embedding_factory

    torch.manual_seed(0)
    network = ProposalNetwork.for_dataset(dataset, embeddings=embedding_factory, **NETWORK,
                                          **RUNS[name])
    trainer = timed_trainer(args.seconds, args.validation_every)(
        lr=LR, num_threads=1, progress=False, plot=False, checkpoint_interval=10 ** 9,
        log_interval=10 ** 9, validation_size=args.validation_traces, validation_interval=1,
        seed=args.seed)
    result = trainer.train(network, dataset, f"{out}/{name}", steps=10 ** 9,
                           batch_size=args.batch_size)
    return {"curve": trainer.curve, "traces_per_s": traces_per_second(trainer.curve),
            "train_seconds": trainer.curve[-1][0], "traces": result.traces,
            "parameters": sum(p.numel() for p in network.parameters())}


def traces_per_second(curve: list) -> float:
    """Training throughput between the first validation point (after the first step, which
    builds and warms up) and the last."""
    (s0, n0, _), (s1, n1, _) = curve[0], curve[-1]
    if len(curve) == 1:
        s0 = n0 = 0
    return (n1 - n0) / max(s1 - s0, 1e-9)


# ----------------------------------------------------------------------------------------------
# pyprob

PYPROB = """
import contextlib, json, math, sys, time
import numpy as np
import torch
import pyprob
from pyprob import Model, ObserveEmbedding, Optimizer, LearningRateScheduler, TraceMode
from pyprob.distributions import Categorical, Normal, Uniform
from pyprob.nn import Batch
from pyprob.nn.inference_network_lstm import InferenceNetworkLSTM

torch.set_num_threads(1)
torch.manual_seed(0)
data = np.load(__DATA__)
shape = tuple(int(d) for d in data["shape"])
samples = json.loads(str(data["samples"]))
index, counts, offsets = data["index"], data["counts"], data["offsets"]
NUM_TRAIN, BATCH, SECONDS, EVERY = __NUM_TRAIN__, __BATCH__, __SECONDS__, __EVERY__


def replaying(distribution, value):
    distribution.sample = lambda: value      # the stored value instead of a prior draw
    return distribution


class Replay(Model):
    # Each run of the model replays trace self.i of the shared set.
    def __init__(self):
        super().__init__(name="toy_tau_replay")
        self.i = 0

    def forward(self):
        for address, dist, low, high, k, value in samples[self.i]:
            if dist == "Categorical":
                # The proposal reads only the number of categories, never the prior's weights.
                d = replaying(Categorical(torch.full((k,), 1.0 / k)), torch.tensor(int(value)))
            elif dist == "Uniform":
                d = replaying(Uniform(low, high), torch.tensor(value))
            else:
                raise ValueError("cannot replay " + dist)
            pyprob.sample(d, address=address)
        grid = torch.zeros(int(np.prod(shape)))
        a, b = offsets[self.i], offsets[self.i + 1]
        grid[torch.from_numpy(index[a:b].astype(np.int64))] = torch.from_numpy(counts[a:b])
        pyprob.observe(Normal(grid, 1.0), value=grid, name="calorimeter")
        return 0


model = Replay()
generator = model._trace_generator(trace_mode=TraceMode.PRIOR_FOR_INFERENCE_NETWORK)


def traces(ids):
    out = []
    for i in ids:
        model.i = int(i)
        out.append(next(generator))
    return out


valid_ids = np.arange(NUM_TRAIN, len(samples))
valid_batches = [Batch(traces(valid_ids[s:s + BATCH])) for s in range(0, len(valid_ids), BATCH)]
with contextlib.redirect_stdout(sys.stderr):
    net = InferenceNetworkLSTM(model=model, observe_embeddings={"calorimeter": {
        "dim": 256, "embedding": ObserveEmbedding.CNN3D5C, "reshape": [1, *shape]}},
        lstm_dim=512, lstm_depth=1, proposal_mixture_components=10)
    net._init_layers_observe_embedding(net._observe_embeddings, example_trace=valid_batches[0][0])
    net._init_layers()
    net._layers_initialized = True
    for batch in valid_batches:     # as pyprob's optimize() does with a validation set
        net._polymorph(batch)
net._optimizer_type = Optimizer.ADAM
net._learning_rate_init, net._learning_rate_end = __LR__, __LR__
net._momentum, net._weight_decay = 0.9, 0.0
net._learning_rate_scheduler_type = LearningRateScheduler.NONE
net._total_train_traces_end = 1e9


def validation_loss():
    net.eval()
    total = 0.0
    with torch.no_grad():
        for batch in valid_batches:
            ok, loss = net._loss(batch)
            total += float(loss) * batch.size if ok else math.nan
    net.train()
    return total / len(valid_ids)


rng = np.random.default_rng(__SEED__)
order, position = rng.permutation(NUM_TRAIN), 0
clock, trained, curve = 0.0, 0, []
net.train()
with contextlib.redirect_stdout(sys.stderr):
    while clock <= SECONDS:
        if position + BATCH > NUM_TRAIN:
            order, position = rng.permutation(NUM_TRAIN), 0
        batch = Batch(traces(order[position:position + BATCH]))   # outside the clock
        position += BATCH
        start = time.perf_counter()
        if net._polymorph(batch) or net._optimizer is None:
            net._create_optimizer()
        net._optimizer.zero_grad()
        ok, loss = net._loss(batch)
        if ok:
            loss.backward()
            net._optimizer.step()
        clock += time.perf_counter() - start
        trained += batch.size
        if not curve or clock >= len(curve) * EVERY or clock > SECONDS:
            curve.append((clock, trained, validation_loss()))
params = sum(p.numel() for p in net.parameters())
print(json.dumps({"curve": curve, "train_seconds": clock, "traces": trained,
                  "parameters": params}))
"""


def train_pyprob(data: str, num_train: int, args) -> dict:
    code = (PYPROB.replace("__DATA__", repr(data)).replace("__NUM_TRAIN__", str(num_train))
            .replace("__BATCH__", str(args.batch_size)).replace("__SECONDS__", str(args.seconds))
            .replace("__EVERY__", str(args.validation_every)).replace("__LR__", repr(LR))
            .replace("__SEED__", str(args.seed)))
    result = run_pyprob(code, timeout=args.seconds * 4 + 900)
    result["traces_per_s"] = traces_per_second(result["curve"])
    return result


# ----------------------------------------------------------------------------------------------
# Report


def time_to_reach(curve: list, target: float) -> float | None:
    """Training seconds at which the validation loss first reaches ``target``, interpolated
    linearly between the validation points around the crossing."""
    previous = None
    for seconds, _, loss in curve:
        if loss <= target:
            if previous is None or previous[1] <= loss:
                return seconds
            t0, v0 = previous
            return t0 + (seconds - t0) * (v0 - target) / (v0 - loss)
        previous = (seconds, loss)
    return None


def prior_loss(dataset, validation: int) -> float:
    """The loss of the prior as the proposal (minus the log prior density of the controlled
    samples, per validation trace): where a network that learnt nothing from the observation
    would end."""
    records = dataset.records(np.arange(len(dataset) - validation, len(dataset)))
    return float(np.mean([-sum(s.log_prob for s in r.samples) for r in records]))


def plot(runs: dict, path: Path, title: str, prior: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in runs.items():
        s, _, v = zip(*run["curve"])
        ax.plot(s, v, "o-", ms=3, label=f"{name} ({run['traces_per_s']:.1f} traces/s)")
    ax.axhline(prior, color="grey", ls=":", label="the prior as proposal")
    ax.set_xlabel("training seconds (one core)")
    ax.set_ylabel("validation loss (−log q per trace)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(runs: dict, args, prior_rate: float, prior: float) -> dict:
    print(f"\ntoy_tau_decay training, {args.train_traces} + {args.validation_traces} traces, "
          f"batch {args.batch_size}, {args.seconds:.0f} s each, one thread")
    print(f"prior traces/s (simulation + HDF5 writing): {prior_rate:.0f}")
    print(f"validation loss of the prior as proposal: {prior:.3f}")
    print(f"{'run':28s} {'traces/s':>9s} {'traces':>8s} {'best val loss':>14s}")
    for name, run in runs.items():
        best = min(v for _, _, v in run["curve"])
        print(f"{name:28s} {run['traces_per_s']:9.1f} {run['traces']:8d} {best:14.3f}")
    summary: dict = {}
    new = runs["calorimeter_projections"]
    for base in ("pyprob CNN3D5C-LSTM", "cnn3d_lstm"):
        if base not in runs:
            continue
        ratio = new["traces_per_s"] / runs[base]["traces_per_s"]
        target = min(v for _, _, v in runs[base]["curve"])
        t_base = time_to_reach(runs[base]["curve"], target)
        t_new = time_to_reach(new["curve"], target)
        speedup = t_base / t_new if t_new else None
        summary[base] = {"traces_per_s_ratio": ratio, "target_validation_loss": target,
                         "seconds_base": t_base, "seconds_projections": t_new,
                         "time_to_loss_ratio": speedup}
        reached = (f"{t_new:.0f} s against {t_base:.0f} s: {speedup:.1f}x faster" if t_new
                   else "not reached by calorimeter_projections")
        print(f"calorimeter_projections / {base}: {ratio:.1f}x the training traces/s; time to "
              f"{base}'s best validation loss {target:.3f}: {reached}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-traces", type=int, default=12000)
    parser.add_argument("--validation-traces", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="training seconds per run (validation not counted)")
    parser.add_argument("--validation-every", type=float, default=30.0,
                        help="training seconds between validation losses")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pyprob", action="store_true")
    parser.add_argument("--skip-cnn3d", action="store_true")
    parser.add_argument("--output", default="outputs/bench_tau_training",
                        help="where the JSON and the PNG go (outputs/ is git-ignored)")
    args = parser.parse_args()
    single_thread()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset, prior_rate = make_traces(tmp, args.train_traces, args.validation_traces,
                                          args.seed)
        print(f"dataset: {dataset} ({prior_rate:.0f} prior traces/s)", flush=True)
        prior = prior_loss(dataset, args.validation_traces)
        for name in RUNS:
            if name == "cnn3d_lstm" and args.skip_cnn3d:
                continue
            runs[name] = train_etalumis(name, dataset, args, tmp)
            print(f"etalumis {name}: {runs[name]['traces_per_s']:.1f} traces/s", flush=True)
        if not args.skip_pyprob:
            if pyprob_available():
                export_for_pyprob(dataset, f"{tmp}/traces.npz")
                runs["pyprob CNN3D5C-LSTM"] = train_pyprob(f"{tmp}/traces.npz",
                                                           args.train_traces, args)
                print(f"pyprob CNN3D5C-LSTM: {runs['pyprob CNN3D5C-LSTM']['traces_per_s']:.1f} "
                      f"traces/s", flush=True)
            else:
                print("pyprob not measured: run `make pyprob-venv` to create "
                      "benchmarks/.venv-pyprob")
    summary = report(runs, args, prior_rate, prior)
    title = (f"toy_tau_decay, {args.train_traces} training traces, batch {args.batch_size}, "
             f"one thread each")
    plot(runs, out / "tau_training.png", title, prior)
    (out / "tau_training.json").write_text(json.dumps(jsonable(
        {"arguments": vars(args), "prior_traces_per_s": prior_rate,
         "prior_validation_loss": prior, "network": NETWORK,
         "runs": runs, "summary": summary}), indent=1))
    print(f"wrote {out / 'tau_training.json'} and {out / 'tau_training.png'}")


if __name__ == "__main__":
    main()
