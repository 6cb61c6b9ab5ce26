"""Run pyprob's RemoteModel (pyprob 1.5.0, in its own virtual environment) against a PPX
simulator and print a JSON summary. Used by test_pyprob.py and benchmarks/bench_ppx.py.

    python pyprob_driver.py ADDRESS NUM_TRACES '{"obs0": 8, "obs1": 9}' [VARIABLE_NAME]
    python pyprob_driver.py ADDRESS --addresses     (the addresses of one prior trace)
"""

import json
import sys
import time


def addresses(address: str) -> None:
    import contextlib
    import io

    import pyprob

    with contextlib.redirect_stdout(io.StringIO()):
        model = pyprob.RemoteModel(address)
        trace = model.prior(num_traces=1).sample()
        model.close()
    print(json.dumps([v.address for v in trace.variables]))


def main() -> None:
    if sys.argv[2] == "--addresses":
        return addresses(sys.argv[1])
    address, num_traces, observe = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    name = sys.argv[4] if len(sys.argv) > 4 else "mu"
    import contextlib
    import io

    import pyprob

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):  # pyprob prints progress; keep stdout for JSON
        model = pyprob.RemoteModel(address)
        model.prior_results(num_traces=10)  # connect and warm up outside the timing
        start = time.perf_counter()
        posterior = model.posterior(
            num_traces=num_traces, inference_engine=pyprob.InferenceEngine.IMPORTANCE_SAMPLING,
            observe=observe)
        elapsed = time.perf_counter() - start
        values = posterior.map(lambda trace: float(trace.named_variables[name].value))
        summary = {"mean": float(values.mean), "stddev": float(values.stddev),
                   "ess": float(values.effective_sample_size), "seconds": elapsed,
                   "traces_per_second": num_traces / elapsed,
                   "addresses": [v.address for v in posterior.sample().variables]}
        model.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
