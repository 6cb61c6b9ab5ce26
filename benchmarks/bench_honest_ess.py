"""Is the reported effective sample size honest? And does SMC earn its cost on a discrete model?

    python benchmarks/bench_honest_ess.py [--runs 16] [--particles 250]

1. For SMC on a 17-step, 3-state hidden Markov model with Gaussian emissions and on the
   rejection-loop (Marsaglia) Gaussian: the ESS implied by the spread of ``--runs`` independent
   runs (posterior variance / mean squared error of the estimated posterior mean, per latent,
   against the exact posterior) beside the ESS the engine reports for that latent, averaged
   over the runs as the variances it stands for are (a harmonic mean: a reported ESS means a
   variance var/ESS, and it is variances that the spread measures). Their ratio should lie
   within [0.5, 2]; with 16 runs the implied ESS of one latent is itself uncertain by about
   ±35 %, so the HMM's ratio is the geometric mean over its 17 latents.
2. Mean absolute error of the HMM's posterior marginals P(x_t = k) for SMC, LMH and importance
   sampling, each given the CPU time SMC took.

Single thread, serial executor; prints one table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import etalumis_core as et
from etalumis_core.models import (gaussian_marsaglia, gaussian_posterior,
                                  hidden_markov_model, hmm_observations, hmm_posterior)

GAUSSIAN_OBS = {"obs0": 8.0, "obs1": 9.0}
STATES = 3


def hmm_marginals(post: et.Posterior) -> np.ndarray:
    return np.array([[post.marginal(f"x{t}").probabilities().get(k, 0.0) for k in range(STATES)]
                     for t in range(17)])


def implied_against_reported(estimates: np.ndarray, exact_mean: np.ndarray,
                             exact_var: np.ndarray, reported: np.ndarray) -> np.ndarray:
    """Per latent: (posterior variance / mean squared error over runs) / the harmonic mean of
    the reported ESS (the reported variances, averaged)."""
    mse = np.mean((estimates - exact_mean) ** 2, axis=0)
    return (exact_var / mse) / harmonic_mean(reported)


def harmonic_mean(values: np.ndarray) -> np.ndarray:
    return len(values) / np.sum(1.0 / np.asarray(values), axis=0)


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def smc_hmm(runs: int, particles: int) -> dict:
    exact, _ = hmm_posterior()
    values = np.arange(STATES)
    mean = exact @ values
    var = exact @ values ** 2 - mean ** 2
    estimates, reported, errors, cpu = [], [], [], []
    for seed in range(runs):
        post, seconds = timed(lambda: et.infer(hidden_markov_model, observe=hmm_observations(),
                                               engine="smc", num_traces=particles, seed=seed,
                                               progress=False))
        by_latent = post.engine_summary["ess_by_latent"]
        estimates.append([post.mean(f"x{t}") for t in range(17)])
        reported.append([by_latent[f"x{t}"] for t in range(17)])
        errors.append(np.abs(hmm_marginals(post) - exact).mean())
        cpu.append(seconds)
    ratio = implied_against_reported(np.array(estimates), mean, var, np.array(reported))
    return {"ratio": float(np.exp(np.mean(np.log(ratio)))), "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()), "reported": float(np.mean(harmonic_mean(reported))),
            "error": float(np.mean(errors)), "cpu": float(np.mean(cpu))}


def smc_marsaglia(runs: int, particles: int) -> dict:
    mean, std, _ = gaussian_posterior([8.0, 9.0])
    estimates, reported = [], []
    for seed in range(runs):
        post = et.infer(gaussian_marsaglia, observe=GAUSSIAN_OBS, engine="smc",
                        num_traces=particles, seed=seed, progress=False)
        estimates.append([post.mean("mu")])
        reported.append([post.engine_summary["ess_by_latent"]["mu"]])
    ratio = implied_against_reported(np.array(estimates), np.array([mean]), np.array([std ** 2]),
                                     np.array(reported))
    return {"ratio": float(ratio[0]), "reported": float(harmonic_mean(reported)[0])}


def at_equal_cpu(engine: str, cpu: float, runs: int, options: dict) -> float:
    """Mean absolute error of the HMM marginals with ``cpu`` seconds per run."""
    exact, _ = hmm_posterior()
    _, probe = timed(lambda: et.infer(hidden_markov_model, observe=hmm_observations(),
                                      engine=engine, num_traces=2000, seed=99, progress=False,
                                      **options))
    traces = max(int(2000 * cpu / probe), 100)
    errors = []
    for seed in range(runs):
        post = et.infer(hidden_markov_model, observe=hmm_observations(), engine=engine,
                        num_traces=traces, seed=seed, progress=False, **options)
        errors.append(np.abs(hmm_marginals(post) - exact).mean())
    return float(np.mean(errors)), traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--particles", type=int, default=250)
    parser.add_argument("--baseline-runs", type=int, default=4)
    args = parser.parse_args()
    started = time.perf_counter()
    hmm = smc_hmm(args.runs, args.particles)
    gauss = smc_marsaglia(args.runs, 2 * args.particles)
    lmh, lmh_traces = at_equal_cpu("lmh", hmm["cpu"], args.baseline_runs,
                                   {"chains": 1, "burn_in": 200})
    importance, is_traces = at_equal_cpu("importance", hmm["cpu"], args.baseline_runs, {})
    print(f"honest ESS over {args.runs} independent SMC runs (implied / reported, want 0.5-2)")
    print(f"  HMM 17x3, {args.particles} particles: ratio {hmm['ratio']:.2f} (geometric mean over "
          f"17 latents; per latent {hmm['ratio_min']:.2f}-{hmm['ratio_max']:.2f}), "
          f"reported ESS per latent {hmm['reported']:.0f} (harmonic mean over runs)")
    print(f"  rejection-loop Gaussian, {2 * args.particles} particles: ratio {gauss['ratio']:.2f}, "
          f"reported ESS {gauss['reported']:.0f} (harmonic mean over runs)")
    print(f"HMM marginals, mean absolute error at equal CPU time ({hmm['cpu']:.1f} s per run)")
    print(f"  smc        {hmm['error']:.4f}  ({args.particles} particles)")
    print(f"  lmh        {lmh:.4f}  ({lmh_traces} draws)")
    print(f"  importance {importance:.4f}  ({is_traces} traces)")
    print(f"  smc no worse than lmh: {hmm['error'] <= lmh}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
