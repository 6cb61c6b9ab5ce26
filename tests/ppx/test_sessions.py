"""A served simulator belongs to one engine at a time, and no message can kill it."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
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

from .conftest import HERE, served_env
from .served_models import simulator as local_simulator

OBS = {"obs0": 8.0, "obs1": 9.0}
BUSY = r"busy: serving another engine since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def _served(serve_process, session_timeout: float = 30.0) -> str:
    address = free_ipc_address()
    serve_process("gaussian", address, {"PPX_SESSION_TIMEOUT": str(session_timeout)})
    return address


def _engine(address: str) -> subprocess.Popen:
    """An etalumis engine in a process of its own (etalumis_driver.py)."""
    env = dict(os.environ)
    env.update(served_env())
    return subprocess.Popen([sys.executable, str(HERE / "etalumis_driver.py"), address, "300"],
                            stdout=subprocess.PIPE, text=True, env=env)


def _outcome(engine: subprocess.Popen) -> dict:
    out, _ = engine.communicate(timeout=120)
    assert engine.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_two_engines_at_once_one_is_refused_the_other_is_undisturbed(serve_process) -> None:
    solo = _outcome(_engine(_served(serve_process)))
    address = _served(serve_process)
    engines = [_engine(address), _engine(address)]  # two processes, started together
    outcomes = [_outcome(e) for e in engines]
    errors = [o["error"] for o in outcomes if "error" in o]
    posteriors = [o for o in outcomes if "values" in o]
    assert len(errors) == 1 and len(posteriors) == 1, outcomes
    assert re.search(BUSY, errors[0]), errors[0]
    # Bit for bit the solo run (floats round-trip exactly through JSON).
    assert posteriors[0] == solo


def test_an_idle_session_ends_when_another_engine_arrives(serve_process) -> None:
    address = _served(serve_process, session_timeout=0.5)
    local = local_simulator("gaussian")
    with PPXSimulator(address, timeout=10, session="a") as a, \
            PPXSimulator(address, timeout=10, session="b") as b:
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
        with PPXSimulator(address, timeout=10, session="a") as a:
            try:
                outcome.append(run_trace(a, Slow(np.random.default_rng(0), OBS), retries=0))
            except SimulatorError as error:
                outcome.append(error)

    thread = threading.Thread(target=slow_engine)
    thread.start()
    assert in_trace.wait(30)
    time.sleep(0.6)
    with PPXSimulator(address, timeout=10, session="b") as b:
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


def test_every_simulator_of_one_engine_process_shares_its_session(serve_process) -> None:
    """A run that builds a second PPXSimulator for the same address is the same engine."""
    address = _served(serve_process)
    with PPXSimulator(address, timeout=10) as first:
        run_trace(first, et.Controller(np.random.default_rng(0), OBS))
    with PPXSimulator(address, timeout=10) as second:
        run_trace(second, et.Controller(np.random.default_rng(0), OBS))
    with PPXSimulator(address, timeout=10, session="another engine") as other:
        with pytest.raises(SimulatorError, match=BUSY):
            run_trace(other, et.Controller(np.random.default_rng(0), OBS), retries=0)
