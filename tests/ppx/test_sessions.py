"""A served simulator belongs to one engine at a time, and no message can kill it."""

from __future__ import annotations

import logging
import random
import threading
import time

import numpy as np
import pytest
import zmq

import etalumis_core as et
from etalumis_core.errors import SimulatorError
from etalumis_core.ppx import PPXSimulator, free_ipc_address, wire
from etalumis_core.ppx.server import _warn_if_exposed
from etalumis_core.simulator import run_trace

from .served_models import simulator as local_simulator

OBS = {"obs0": 8.0, "obs1": 9.0}
BUSY = r"busy: serving another engine since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def _posterior(address: str, num_traces: int = 300) -> et.Posterior:
    with PPXSimulator(address, timeout=10, startup_timeout=30) as sim:
        return et.infer(sim, observe=OBS, engine="importance", num_traces=num_traces, seed=0,
                        progress=False)


def _served(serve_process, session_timeout: float = 30.0) -> str:
    address = free_ipc_address()
    serve_process("gaussian", address, {"PPX_SESSION_TIMEOUT": str(session_timeout)})
    return address


def test_two_engines_at_once_one_is_refused_the_other_is_undisturbed(serve_process) -> None:
    solo = _posterior(_served(serve_process)).marginal("mu")
    address = _served(serve_process)
    start = threading.Barrier(2)
    outcomes: list = [None, None]

    def engine(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = _posterior(address)
        except SimulatorError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=engine, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    posteriors = [o for o in outcomes if isinstance(o, et.Posterior)]
    assert len(errors) == 1 and len(posteriors) == 1, outcomes
    assert "busy: serving another engine since" in str(errors[0])
    mu = posteriors[0].marginal("mu")
    assert np.array_equal(mu.values, solo.values)
    assert np.array_equal(mu.weights, solo.weights)


def test_an_idle_session_ends_when_another_engine_arrives(serve_process) -> None:
    address = _served(serve_process, session_timeout=0.5)
    local = local_simulator("gaussian")
    with PPXSimulator(address, timeout=10) as a, PPXSimulator(address, timeout=10) as b:
        run_trace(a, et.Controller(np.random.default_rng(0), OBS))
        with pytest.raises(SimulatorError, match=BUSY):
            run_trace(b, et.Controller(np.random.default_rng(0), OBS), retries=1)
        time.sleep(0.8)  # a has been idle longer than the session timeout: b takes over
        trace = run_trace(b, et.Controller(np.random.default_rng(1), OBS))
        expected = run_trace(local, et.Controller(np.random.default_rng(1), OBS))
        assert trace.log_weight == expected.log_weight
        with pytest.raises(SimulatorError, match=BUSY):
            run_trace(a, et.Controller(np.random.default_rng(0), OBS), retries=1)


def test_an_engine_whose_trace_was_taken_over_refuses_its_result(serve_process) -> None:
    address = _served(serve_process, session_timeout=0.3)
    in_trace, taken_over = threading.Event(), threading.Event()

    class Slow(et.Controller):
        def propose(self, address, distribution, name):
            in_trace.set()
            taken_over.wait(30)  # idle mid-trace while another engine takes the simulator
            return super().propose(address, distribution, name)

    outcome: list = []

    def slow_engine() -> None:
        with PPXSimulator(address, timeout=10) as a:
            try:
                outcome.append(run_trace(a, Slow(np.random.default_rng(0), OBS), retries=0))
            except SimulatorError as error:
                outcome.append(error)

    thread = threading.Thread(target=slow_engine)
    thread.start()
    assert in_trace.wait(30)
    time.sleep(0.6)
    with PPXSimulator(address, timeout=10) as b:
        trace = run_trace(b, et.Controller(np.random.default_rng(2), OBS))
    taken_over.set()
    thread.join(30)
    expected = run_trace(local_simulator("gaussian"), et.Controller(np.random.default_rng(2), OBS))
    assert trace.log_weight == expected.log_weight
    assert len(outcome) == 1 and isinstance(outcome[0], SimulatorError), outcome
    assert "busy: serving another engine" in str(outcome[0])
    assert "result is refused" in str(outcome[0])


_VALID = [wire.encode(m) for m in (
    wire.Handshake("fuzz"), wire.Run(), wire.SampleResult(1.5), wire.ObserveResult(),
    wire.TagResult(), wire.Reset(), wire.HandshakeResult("x", "y"), wire.RunResult(2.0),
    wire.Sample("a", "mu", et.Normal(0.0, 1.0)))]


def _frame(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(_VALID)
    if kind < 0.5:
        return b""
    if kind < 0.7:  # a valid message with a few bits flipped
        data = bytearray(rng.choice(_VALID))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    return rng.randbytes(rng.randrange(1, 120))


def test_a_thousand_random_multi_frame_messages_leave_the_server_serving(serve_process) -> None:
    address = _served(serve_process, session_timeout=0.2)
    rng = random.Random(20261130)
    context = zmq.Context.instance()
    answered = 0
    for peer in range(20):  # 20 peers of 50 messages each: REQ engines and raw DEALERs
        kind = zmq.REQ if peer % 4 else zmq.DEALER
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(address)
        for _ in range(50):
            count = rng.choice([1, 2, 2, 2, 3, 5, 9])
            frames = [_frame(rng) for _ in range(count)]
            if kind == zmq.DEALER and rng.random() < 0.5:
                frames = [b""] + frames  # as a REQ socket would frame it
            sock.send_multipart(frames)
            reply = sock.recv_multipart()  # raises zmq.Again if the server did not answer
            wire.decode(reply[-1])  # every answer is a PPX message (Reset, mostly)
            answered += 1
        sock.close()
    assert answered == 1000
    time.sleep(0.4)  # whichever fuzzing peer holds the session is idle now
    local = local_simulator("gaussian")
    with PPXSimulator(address, timeout=10) as sim:
        for seed in range(20):
            remote = run_trace(sim, et.Controller(np.random.default_rng(seed), OBS))
            expected = run_trace(local, et.Controller(np.random.default_rng(seed), OBS))
            assert remote.log_weight == expected.log_weight


@pytest.mark.parametrize("address, warns", [
    ("tcp://0.0.0.0:5555", True), ("tcp://*:5555", True), ("tcp://192.168.1.4:5555", True),
    ("tcp://eth0:5555", True), ("tcp://[::]:5555", True), ("tcp://example.org:5555", True),
    ("tcp://127.0.0.1:5555", False), ("tcp://127.0.0.2:5555", False),
    ("tcp://localhost:5555", False), ("tcp://[::1]:5555", False), ("ipc:///tmp/sim", False),
])
def test_serving_beyond_loopback_warns_that_ppx_has_no_authentication(
        address: str, warns: bool, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="etalumis_core.ppx.server"):
        _warn_if_exposed(address)
    warned = any("no authentication" in r.getMessage() for r in caplog.records)
    assert warned == warns
