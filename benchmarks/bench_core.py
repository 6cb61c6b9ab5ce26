"""Core engines against pyprob 1.5.0 on the Gaussian-with-unknown-mean model, one core.

    python benchmarks/bench_core.py [--traces 20000]

Prints prior importance-sampling traces/s and MH steps/s for both systems, and the ratios
(target: at least 10x pyprob's traces/s).
"""

from __future__ import annotations

import argparse

from harness import (PYPROB_GAUSSIAN, best_rate, pyprob_available, run_pyprob, single_thread,
                     table)

PYPROB = """
import json, math, time, io, contextlib
import pyprob
from pyprob import Model, InferenceEngine
from pyprob.distributions import Normal

""" + PYPROB_GAUSSIAN + """
model = Gaussian()
out = {}
for key, engine in (("importance", InferenceEngine.IMPORTANCE_SAMPLING),
                    ("lmh", InferenceEngine.LIGHTWEIGHT_METROPOLIS_HASTINGS),
                    ("rmh", InferenceEngine.RANDOM_WALK_METROPOLIS_HASTINGS)):
    n = N if key == "importance" else N // 2
    best = 0.0
    for _ in range(2):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            start = time.perf_counter()
            post = model.posterior(num_traces=n, inference_engine=engine,
                                   observe={'obs0': 8, 'obs1': 9})
            best = max(best, n / (time.perf_counter() - start))
    out[key] = best
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=20000)
    args = parser.parse_args()
    single_thread()

    import etalumis_core as et
    from etalumis_core.models import gaussian_unknown_mean

    obs = {"obs0": 8.0, "obs1": 9.0}
    rows = []
    theirs = (run_pyprob(f"N = {args.traces}\n" + PYPROB) if pyprob_available() else {})
    for engine, n in (("importance", args.traces), ("lmh", args.traces // 2),
                      ("rmh", args.traces // 2)):
        rate = best_rate(lambda: et.infer(gaussian_unknown_mean, observe=obs, engine=engine,
                                          num_traces=n, seed=0, progress=False).num_traces)
        unit = "traces/s" if engine == "importance" else "steps/s"
        rows.append((f"{engine} on the Gaussian model", rate, theirs.get(engine), unit))
    table("core engines, single core (Gaussian with unknown mean)", rows)
    if not theirs:
        print("pyprob not measured: run `make pyprob-venv` to create benchmarks/.venv-pyprob")


if __name__ == "__main__":
    main()
