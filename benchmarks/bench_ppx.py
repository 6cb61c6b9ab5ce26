"""PPX throughput: etalumis's engine side against pyprob's, and against the raw ZeroMQ floor.

    python benchmarks/bench_ppx.py [--traces N] [--round-trips N] [--transport ipc|tcp]

1. Traces per second driving one etalumis-served Python simulator process (the Gaussian with
   unknown mean: one Sample and two Observes per trace) with etalumis's ``PPXSimulator`` (a bare
   ``run_trace`` loop and full ``et.infer`` importance sampling) and with pyprob 1.5.0's
   ``RemoteModel`` importance sampling, run in its own virtual environment
   ``benchmarks/.venv-pyprob`` (``make pyprob-venv``; skipped when absent). The simulator
   process is the same for both; only the engine differs.
2. Per-message round trip of the engine side: encode a SampleResult, send it, receive and decode
   a Sample (a 200-character native-style address, a scalar Normal), against a server that
   answers every request with that same pre-encoded Sample -- versus a raw pyzmq REQ/REP
   ping-pong of identical byte sizes against the same kind of server (the floor).
3. Codec only: the hand-written codec against the flatc-generated bindings.

Targets: >= 3x pyprob's traces/s; round trip within 2x of the raw floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import etalumis_core as et  # noqa: E402
from etalumis_core.ppx import PPXSimulator, free_ipc_address, free_tcp_address, serve, wire  # noqa: E402
from etalumis_core.simulator import run_trace  # noqa: E402

PYPROB_PYTHON = ROOT / "benchmarks" / ".venv-pyprob" / "bin" / "python"
PYPROB_DRIVER = ROOT / "tests" / "ppx" / "pyprob_driver.py"
OBS = {"obs0": 8.0, "obs1": 9.0}
ADDRESS = ("[ppx::sample(ppx::Normal const&)+0x3a; model::forward(ppx::Context&)+0x1f4; "
           "ppx::Simulator::run_trace()+0x9c; main+0x8d; __libc_start_main+0x85; _start+0x25]")[:200]


def gaussian() -> float:
    mu = et.sample(et.Normal(1.0, math.sqrt(5.0)), name="mu")
    et.observe(et.Normal(mu, math.sqrt(2.0)), name="obs0")
    et.observe(et.Normal(mu, math.sqrt(2.0)), name="obs1")
    return mu


def _serve_main(address: str) -> None:
    serve(et.PythonSimulator(gaussian, name="gaussian"), address)


def _echo_main(address: str, reply_hex: str) -> None:
    reply = bytes.fromhex(reply_hex)
    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind(address)
    while True:
        sock.recv()
        sock.send(reply)


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, __file__, *args], env=env)


def _address(transport: str) -> str:
    return free_tcp_address() if transport == "tcp" else free_ipc_address()


def bench_traces(n: int, transport: str) -> dict:
    address = _address(transport)
    server = _spawn("--serve", address)
    out: dict = {}
    try:
        with PPXSimulator(address, timeout=30) as sim:
            controller = et.Controller(np.random.default_rng(0), OBS)
            for _ in range(50):
                run_trace(sim, controller)
            start = time.perf_counter()
            for _ in range(n):
                run_trace(sim, controller)
            out["etalumis_run_trace"] = n / (time.perf_counter() - start)
            start = time.perf_counter()
            post = et.infer(sim, observe=OBS, engine="importance", num_traces=n, seed=0,
                            progress=False)
            out["etalumis_infer"] = n / (time.perf_counter() - start)
            out["etalumis_mean"] = float(post.marginal("mu").mean)
        if PYPROB_PYTHON.exists():
            # A served simulator belongs to one engine session at a time: pyprob gets its own.
            server.kill()
            server.wait()
            address = _address(transport)
            server = _spawn("--serve", address)
            proc = subprocess.run([str(PYPROB_PYTHON), str(PYPROB_DRIVER), address, str(n),
                                   json.dumps(OBS)], capture_output=True, text=True, timeout=600)
            if proc.returncode == 0:
                summary = json.loads(proc.stdout.strip().splitlines()[-1])
                out["pyprob"] = summary["traces_per_second"]
                out["pyprob_mean"] = summary["mean"]
            else:
                out["pyprob_error"] = proc.stderr[-2000:]
    finally:
        server.kill()
        server.wait()
    return out


def bench_round_trip(n: int, transport: str) -> dict:
    sample = wire.encode(wire.Sample(ADDRESS, "mu", et.Normal(1.0, math.sqrt(5.0))))
    request = wire.encode_sample_result(1.2345)
    address = _address(transport)
    server = _spawn("--echo", address, sample.hex())
    out: dict = {"reply_bytes": len(sample), "request_bytes": len(request)}
    try:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        raw = bytes(len(request))
        for _ in range(200):
            sock.send(raw)
            sock.recv()

        def raw_loop() -> float:
            start = time.perf_counter()
            for _ in range(n):
                sock.send(raw)
                sock.recv()
            return (time.perf_counter() - start) / n

        def ppx_loop() -> float:
            start = time.perf_counter()
            value = 1.2345
            for _ in range(n):
                sock.send(wire.encode_sample_result(value))
                msg = wire.decode(sock.recv())
                value = msg.distribution.mean
            return (time.perf_counter() - start) / n

        # Interleave to share the noise of a busy machine; keep the best of three. "cold"
        # disables the cache of decoded Samples, so every reply is decoded from scratch.
        raws, warm, cold = [], [], []
        limit = wire._SAMPLE_CACHE_MAX_BYTES
        for _ in range(3):
            raws.append(raw_loop())
            warm.append(ppx_loop())
            wire._SAMPLE_CACHE_MAX_BYTES = 0
            try:
                cold.append(ppx_loop())
            finally:
                wire._SAMPLE_CACHE_MAX_BYTES = limit
        out["raw_us"] = min(raws) * 1e6
        out["ppx_us"] = min(warm) * 1e6
        out["ppx_cold_us"] = min(cold) * 1e6
        sock.close()
    finally:
        server.kill()
        server.wait()
    return out


def bench_codec(n: int) -> dict:
    import flatbuffers

    from etalumis_core.ppx.ppx import Message as GMessage
    from etalumis_core.ppx.ppx import MessageBody as GBody
    from etalumis_core.ppx.ppx import Normal as GNormal
    from etalumis_core.ppx.ppx import Sample as GSample
    from etalumis_core.ppx.ppx import SampleResult as GSampleResult
    from etalumis_core.ppx.ppx import Tensor as GTensor

    sample = wire.encode(wire.Sample(ADDRESS, "mu", et.Normal(1.0, math.sqrt(5.0))))

    def gen_encode(v: float) -> bytes:
        b = flatbuffers.Builder(64)
        GTensor.TensorStartDataVector(b, 1)
        b.PrependFloat64(v)
        data = b.EndVector()
        GTensor.TensorStartShapeVector(b, 0)
        shape = b.EndVector()
        GTensor.TensorStart(b)
        GTensor.TensorAddData(b, data)
        GTensor.TensorAddShape(b, shape)
        t = GTensor.TensorEnd(b)
        GSampleResult.SampleResultStart(b)
        GSampleResult.SampleResultAddResult(b, t)
        body = GSampleResult.SampleResultEnd(b)
        GMessage.MessageStart(b)
        GMessage.MessageAddBodyType(b, GBody.MessageBody.SampleResult)
        GMessage.MessageAddBody(b, body)
        b.Finish(GMessage.MessageEnd(b))
        return bytes(b.Output())

    def gen_decode(buf: bytes) -> object:
        m = GMessage.Message.GetRootAs(buf, 0)
        s = GSample.Sample()
        s.Init(m.Body().Bytes, m.Body().Pos)
        s.Address().decode()
        s.Name().decode()
        nrm = GNormal.Normal()
        nrm.Init(s.Distribution().Bytes, s.Distribution().Pos)
        mean = nrm.Mean().DataAsNumpy()
        std = nrm.Stddev().DataAsNumpy()
        return et.Normal(float(mean[0]), float(std[0]))

    def timed(fn, arg) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn(arg)
        return (time.perf_counter() - start) / n * 1e6

    return {"encode_sample_result_us": timed(wire.encode_sample_result, 1.5),
            "flatc_encode_sample_result_us": timed(gen_encode, 1.5),
            "decode_sample_us": timed(wire.decode, sample),
            "decode_sample_cold_us": timed(lambda b: wire._decode(b, len(b)), sample),
            "flatc_decode_sample_us": timed(gen_decode, sample)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=3000)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--echo", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve_main(args.serve)
    if args.echo:
        return _echo_main(*args.echo)

    codec = bench_codec(20000)
    print(f"codec  encode SampleResult {codec['encode_sample_result_us']:.2f} us "
          f"(flatc bindings {codec['flatc_encode_sample_result_us']:.2f} us); decode Sample "
          f"{codec['decode_sample_cold_us']:.2f} us, a repeated Sample (cached) "
          f"{codec['decode_sample_us']:.2f} us (flatc bindings {codec['flatc_decode_sample_us']:.2f} us)")
    rt = bench_round_trip(args.round_trips, args.transport)
    print(f"round trip over {args.transport} ({rt['request_bytes']} B request, {rt['reply_bytes']} B "
          f"reply): raw pyzmq floor {rt['raw_us']:.1f} us; PPX {rt['ppx_cold_us']:.1f} us decoding every "
          f"Sample (ratio {rt['ppx_cold_us'] / rt['raw_us']:.2f}), {rt['ppx_us']:.1f} us for a repeated "
          f"Sample (ratio {rt['ppx_us'] / rt['raw_us']:.2f}) (target <= 2)")
    tr = bench_traces(args.traces, args.transport)
    print(f"traces/s over {args.transport}: etalumis run_trace {tr['etalumis_run_trace']:.0f}, "
          f"etalumis infer {tr['etalumis_infer']:.0f} (posterior mean {tr['etalumis_mean']:.3f})")
    if "pyprob" in tr:
        print(f"traces/s pyprob RemoteModel {tr['pyprob']:.0f} (posterior mean "
              f"{tr['pyprob_mean']:.3f}); etalumis/pyprob: run_trace "
              f"{tr['etalumis_run_trace'] / tr['pyprob']:.2f}x, infer "
              f"{tr['etalumis_infer'] / tr['pyprob']:.2f}x (target >= 3)")
    elif "pyprob_error" in tr:
        print("pyprob failed:\n" + tr["pyprob_error"])
    else:
        print(f"pyprob skipped: {PYPROB_PYTHON} does not exist (make pyprob-venv)")


if __name__ == "__main__":
    main()
