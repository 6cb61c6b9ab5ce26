"""An etalumis engine in a process of its own: importance sampling of the served gaussian model,
printed as JSON (the posterior's values and weights, or the error).

    python etalumis_driver.py ADDRESS NUM_TRACES
"""

import json
import sys

import etalumis_core as et
from etalumis_core.errors import SimulatorError
from etalumis_core.ppx import PPXSimulator


def main() -> None:
    address, num_traces = sys.argv[1], int(sys.argv[2])
    try:
        with PPXSimulator(address, timeout=10, startup_timeout=30) as sim:
            posterior = et.infer(sim, observe={"obs0": 8.0, "obs1": 9.0}, engine="importance",
                                 num_traces=num_traces, seed=0, progress=False)
    except SimulatorError as error:
        print(json.dumps({"error": str(error)}))
        return
    mu = posterior.marginal("mu")
    print(json.dumps({"values": [float(v) for v in mu.values],
                      "weights": [float(w) for w in mu.weights]}))


if __name__ == "__main__":
    main()
