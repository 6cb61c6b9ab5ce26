"""Inference compilation against pyprob 1.5.0, one core.

    python benchmarks/bench_ic.py [--traces 12800] [--batch-size 64] [--lstm-dim 128]
                                  [--tau-seconds 120]

1. Training throughput (traces/s) of the LSTM proposal network, online on the Gaussian model,
   same batch size and equal layer sizes on both sides (LSTM width and depth, address embedding
   64, sample embedding 4, distribution-type embedding 8, 10 mixture components, observation
   embedding 64); target at least 5x pyprob.
2. Effective sample size per CPU-second of IC against random-walk MH on the Gaussian model
   (and on toy_tau_decay when its plugin is installed). IC's ESS is Kish's ESS of the importance
   weights; MH's is N / (1 + 2 sum of autocorrelations) of the inferred variable. Training time
   is reported separately (it is paid once per simulator, not per observation).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
from harness import PYPROB_GAUSSIAN, pyprob_available, run_pyprob, single_thread, table

PYPROB = """
import json, math, time, io, contextlib
import torch
import pyprob
from pyprob import Model, InferenceNetwork
from pyprob.distributions import Normal
torch.set_num_threads(1)

""" + PYPROB_GAUSSIAN + """
model = Gaussian()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    # A short warm-up builds the network and its layers (as ours is built before timing).
    model.learn_inference_network(num_traces=BATCH * 2, inference_network=InferenceNetwork.LSTM,
                                  observe_embeddings={'obs0': {'dim': 32}, 'obs1': {'dim': 32}},
                                  batch_size=BATCH, lstm_dim=LSTM, proposal_mixture_components=10)
    start = time.perf_counter()
    model.learn_inference_network(num_traces=N, inference_network=InferenceNetwork.LSTM,
                                  observe_embeddings={'obs0': {'dim': 32}, 'obs1': {'dim': 32}},
                                  batch_size=BATCH, lstm_dim=LSTM, proposal_mixture_components=10)
    elapsed = time.perf_counter() - start
params = sum(p.numel() for p in model._inference_network.parameters())
print(json.dumps({"train": N / elapsed, "params": params}))
"""


def ess_table(title: str, ic: float, rmh: float) -> None:
    print(f"\n{title}")
    print(f"{'':40s} {'IC':>14s} {'RMH':>14s} {'IC/RMH':>8s}")
    print(f"{'ESS per CPU-second':40s} {ic:14.1f} {rmh:14.1f} {ic / rmh:7.1f}x")


def network_options(lstm_dim: int) -> dict:
    return dict(embedding_dim=64, lstm_dim=lstm_dim, address_embedding_dim=64,
                sample_embedding_dim=4, distribution_embedding_dim=8, head_hidden_dim=lstm_dim // 2,
                mixture_components=10, embedding_options={"hidden_dims": (64,)})


def train_gaussian(args, out: str):
    import torch
    from etalumis_core import models
    from etalumis_core.nn import ProposalNetwork, Trainer

    sim = models.make_gaussian()
    torch.manual_seed(0)
    network = ProposalNetwork.for_simulator(sim, **network_options(args.lstm_dim))
    trainer = Trainer(lr=3e-3, lr_end=1e-4, lr_decay_power=1.0, num_threads=1, progress=False,
                      checkpoint_interval=10 ** 9, plot=False)
    # Warm-up (first optimizer step imports torch internals), then the timed run.
    trainer.train(network, sim, out + "/warmup", steps=2, batch_size=args.batch_size)
    cpu = time.process_time()
    result = trainer.train(network, sim, out + "/train", num_traces=args.traces,
                           batch_size=args.batch_size)
    cpu = time.process_time() - cpu
    params = sum(p.numel() for p in network.parameters())
    return result, cpu, params


def ess_per_cpu_second(simulator, observe: dict, key: str, network, n_ic: int, n_mh: int,
                       seed: int = 1) -> tuple[float, float, dict]:
    import etalumis_core as et

    cpu = time.process_time()
    post = et.infer(simulator, observe=observe, engine=et.InferenceCompilation(network),
                    num_traces=n_ic, seed=seed, progress=False)
    ic_cpu = time.process_time() - cpu
    cpu = time.process_time()
    mh = et.infer(simulator, observe=observe, engine=et.RandomWalkMH(), num_traces=n_mh, seed=seed,
                  progress=False)
    mh_cpu = time.process_time() - cpu
    mh_ess = mh.mcmc_ess(key)
    info = {"ic_ess": post.ess, "ic_traces": n_ic, "ic_cpu": ic_cpu, "ic_mean": float(post.mean(key)),
            "mh_ess": mh_ess, "mh_steps": n_mh, "mh_cpu": mh_cpu, "mh_mean": float(mh.mean(key)),
            "fallbacks": post.metadata["ic"]["prior_fallbacks"]}
    return post.ess / ic_cpu, mh_ess / mh_cpu, info


def tau_decay(args, out: str) -> None:
    try:
        import etalumis_toy_tau_decay  # noqa: F401
    except ImportError:
        print("\ntoy_tau_decay not installed: skipped")
        return
    import etalumis_core as et
    import torch
    from etalumis_core.nn import ProposalNetwork, Trainer

    from etalumis_toy_tau_decay.plugin import etalumis_register_simulators

    found: dict = {}
    etalumis_register_simulators(lambda name, factory, description="": found.update({name: factory}))
    spec = et.SimulatorSpec(found["toy_tau_decay"], name="toy_tau_decay")
    sim = spec.build()
    truth = et.simulate(sim, seed=7)
    observe = et.observations_of(truth)
    torch.manual_seed(0)
    network = ProposalNetwork.for_simulator(
        sim, embedding_dim=64, lstm_dim=args.lstm_dim, address_embedding_dim=16,
        sample_embedding_dim=4, head_hidden_dim=64, mixture_components=5,
        embedding_options={"hidden_dims": (128,)})
    cpu = time.process_time()
    result = Trainer(lr=1e-3, num_threads=1, progress=False, prescan_traces=200, plot=False,
                     max_seconds=args.tau_seconds, checkpoint_interval=10 ** 9).train(
        network, spec, out + "/tau", steps=10 ** 6, batch_size=args.batch_size)
    train_cpu = time.process_time() - cpu
    ic_rate, mh_rate, info = ess_per_cpu_second(sim, observe, "px", network, 500, 2000)
    ess_table(f"toy_tau_decay: ESS per CPU-second of px (IC trained on {result.traces} traces, "
              f"{train_cpu:.0f} CPU-s)", ic_rate, mh_rate)
    print(f"  truth px={truth.named('px').value:.3f}; {info}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lstm-dim", type=int, default=128)
    parser.add_argument("--tau-seconds", type=float, default=120)
    parser.add_argument("--skip-tau", action="store_true")
    args = parser.parse_args()
    single_thread()

    from etalumis_core import models

    theirs = {}
    if pyprob_available():
        theirs = run_pyprob(f"N = {args.traces}\nBATCH = {args.batch_size}\n"
                            f"LSTM = {args.lstm_dim}\n" + PYPROB)
    with tempfile.TemporaryDirectory() as out:
        result, cpu, params = train_gaussian(args, out)
        table(f"IC training, Gaussian model, online, batch {args.batch_size}, LSTM "
              f"{args.lstm_dim} (parameters: etalumis {params}, pyprob {theirs.get('params')})",
              [("training throughput", result.traces_per_second, theirs.get("train"), "traces/s")])
        if not theirs:
            print("pyprob not measured: run `make pyprob-venv` to create benchmarks/.venv-pyprob")
        print(f"  final loss {np.mean(result.losses[-20:]):.4f} (optimum {0.5 * math.log(2 * math.pi * math.e * models.gaussian_posterior([8, 9])[1] ** 2):.4f}); "
              f"training {cpu:.1f} CPU-s")
        obs = {"obs0": 8.0, "obs1": 9.0}
        ic_rate, mh_rate, info = ess_per_cpu_second(models.make_gaussian(), obs, "mu",
                                                    result.network, 4000, 8000)
        ess_table("Gaussian model: ESS per CPU-second of mu (inference only)", ic_rate, mh_rate)
        print(f"  exact mean {models.gaussian_posterior([8, 9])[0]:.4f}; {info}")
        if not args.skip_tau:
            tau_decay(args, out)


if __name__ == "__main__":
    main()
