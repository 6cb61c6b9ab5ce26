"""Faults: a simulator that dies, stalls, or breaks the protocol costs a retry, never a hang or
a lost trace."""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.errors import ProtocolError, SimulatorError, SimulatorProtocolError
from etalumis_core.ppx import PPXSimulator, free_ipc_address
from etalumis_core.simulator import run_trace

from .conftest import served_command, served_env, wait_gone
from .served_models import simulator as local_simulator

OBS = {"obs0": 8.0, "obs1": 9.0}
TIMEOUT = 2.0


def _faulty(fault: str, tmp_path: Path, trace: int = 3, **kwargs) -> PPXSimulator:
    env = served_env()
    env.update(PPX_FAULT=fault, PPX_FAULT_TRACE=str(trace),
               PPX_FAULT_MARKER=str(tmp_path / "fault-happened"))
    return PPXSimulator(command=served_command("gaussian"), env=env, timeout=TIMEOUT,
                        startup_timeout=30, **kwargs)


def _undisturbed(n: int, seed: int) -> list[et.Trace]:
    local = local_simulator("gaussian")
    controller = et.Controller(np.random.default_rng(seed), OBS)
    return [run_trace(local, controller) for _ in range(n)]


def _assert_same(traces: list[et.Trace], expected: list[et.Trace]) -> None:
    assert len(traces) == len(expected)
    for a, b in zip(traces, expected):
        assert [(v.address, v.value) for v in a.variables] == [(v.address, v.value) for v in b.variables]
        assert a.log_weight == b.log_weight


@pytest.mark.parametrize("fault", ["kill", "exit", "sleep", "garbage", "reset"])
def test_fault_costs_one_retry_and_no_trace(fault: str, tmp_path: Path) -> None:
    with _faulty(fault, tmp_path) as sim:
        controller = et.Controller(np.random.default_rng(7), OBS)
        start = time.monotonic()
        traces = [run_trace(sim, controller, retries=2) for _ in range(8)]
        elapsed = time.monotonic() - start
        assert (tmp_path / "fault-happened").exists()
        assert sim.launches == 2  # the faulty process was replaced once
    _assert_same(traces, _undisturbed(8, 7))
    assert elapsed < TIMEOUT + 20


@pytest.mark.parametrize("fault, error, match", [
    ("kill", SimulatorError, r"served_models.py gaussian.*killed by signal SIGKILL"),
    ("exit", SimulatorError, r"served_models.py gaussian.*exited with code 3"),
    ("sleep", SimulatorError, r"stalled: no message for 2\.\d+ s during Observe"),
    ("garbage", SimulatorProtocolError, r"malformed PPX message"),
    ("reset", SimulatorProtocolError, r"sent Reset"),
])
def test_fault_without_retries_is_a_clear_error_within_the_timeout(
        fault: str, error: type, match: str, tmp_path: Path) -> None:
    with _faulty(fault, tmp_path, trace=1) as sim:
        sim.restart()  # launched and handshaken: what follows is timed
        pid = sim._res.process.pid
        start = time.monotonic()
        with pytest.raises(error, match=match):
            run_trace(sim, et.Controller(np.random.default_rng(0), OBS), retries=0)
        assert time.monotonic() - start < TIMEOUT + 1.5
        assert wait_gone(pid), "the failed simulator process must be gone"
        # The next trace works on a fresh process.
        run_trace(sim, et.Controller(np.random.default_rng(0), OBS))
        assert sim.launches == 2


def test_protocol_errors_are_retryable_simulator_errors() -> None:
    assert issubclass(SimulatorProtocolError, ProtocolError)
    assert issubclass(SimulatorProtocolError, SimulatorError)


def test_stall_of_a_running_server_then_resynchronisation(serve_process, tmp_path: Path) -> None:
    address = free_ipc_address()
    serve_process("gaussian", address, {"PPX_FAULT": "stall", "PPX_FAULT_SECONDS": "3",
                                        "PPX_FAULT_TRACE": "2",
                                        "PPX_FAULT_MARKER": str(tmp_path / "m")})
    with PPXSimulator(address, timeout=1.0, startup_timeout=30) as sim:
        controller = et.Controller(np.random.default_rng(3), OBS)
        traces = [run_trace(sim, controller, retries=2) for _ in range(5)]
    _assert_same(traces, _undisturbed(5, 3))


def test_simulator_that_exits_at_startup(tmp_path: Path) -> None:
    sim = PPXSimulator(command=[sys.executable, "-c", "import sys; sys.exit(5)"], timeout=TIMEOUT)
    start = time.monotonic()
    with pytest.raises(SimulatorError, match=r"exited with code 5 during the handshake"):
        run_trace(sim, et.Controller(np.random.default_rng(0)), retries=1)
    assert time.monotonic() - start < 5
    sim.close()


def test_missing_program() -> None:
    with PPXSimulator(command=["/nonexistent/simulator"]) as sim:
        with pytest.raises(SimulatorError, match="cannot launch"):
            run_trace(sim, et.Controller(np.random.default_rng(0)))


def test_silent_address_times_out() -> None:
    with PPXSimulator(free_ipc_address(), timeout=0.5, startup_timeout=0.5) as sim:
        start = time.monotonic()
        with pytest.raises(SimulatorError, match="stalled"):
            run_trace(sim, et.Controller(np.random.default_rng(0)), retries=1)
        assert time.monotonic() - start < 3


def test_close_and_garbage_collection_leave_no_process() -> None:
    sim = PPXSimulator(command=served_command("gaussian"), env=served_env(), timeout=10)
    run_trace(sim, et.Controller(np.random.default_rng(0), OBS))
    pid = sim._res.process.pid
    sim.close()
    assert wait_gone(pid)
    sim.close()  # twice is fine

    sim = PPXSimulator(command=served_command("gaussian"), env=served_env(), timeout=10)
    run_trace(sim, et.Controller(np.random.default_rng(0), OBS))
    pid = sim._res.process.pid
    del sim
    gc.collect()
    assert wait_gone(pid)


def test_a_launched_server_exits_when_its_engine_is_killed(tmp_path) -> None:
    """SIGKILL leaves the engine no chance to stop what it launched: the server notices."""
    import signal
    import subprocess
    import textwrap

    from .conftest import SERVED

    engine = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        import numpy as np
        import etalumis_core as et
        from etalumis_core.ppx import PPXSimulator
        sim = PPXSimulator(command=[sys.executable, {SERVED!r}, "gaussian"], timeout=20)
        et.run_trace(sim, et.Controller(np.random.default_rng(0), {{"obs0": 8.0, "obs1": 9.0}}))
        print(sim.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, **served_env()})
    server_pid = int(engine.stdout.readline())
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    if not wait_gone(server_pid, timeout=10):
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the served simulator outlived the engine that launched it")


def test_after_retries_the_error_names_the_first_cause_and_the_trace_seed(tmp_path: Path) -> None:
    from etalumis_core.seeding import chunk_rng

    env = served_env()
    env.update(PPX_FAULT="sleep", PPX_FAULT_TRACE="1", PPX_AFTER_FAULT="exit",
               PPX_FAULT_MARKER=str(tmp_path / "fault-happened"))
    with PPXSimulator(command=served_command("gaussian"), env=env, timeout=TIMEOUT,
                      startup_timeout=30) as sim:
        with pytest.raises(SimulatorError) as caught:
            run_trace(sim, et.Controller(chunk_rng(7, 2), OBS), retries=2)
    text = str(caught.value)
    # The stall started it; the restarts that failed afterwards come second.
    assert "stalled: no message for" in text.split("(first of")[0]
    assert text.index("stalled: no message for") < text.index("exited with code 4")
    assert "first of 3 failed attempts" in text
    assert text.endswith("[trace 1 drawn from chunk_rng(7, 2) (the run's seed 7)]")


def test_a_trace_that_never_ends_fails_at_the_message_limit_naming_the_address() -> None:
    from etalumis_core.errors import TraceTooLongError

    assert PPXSimulator("ipc:///nowhere").max_choices == 1_000_000
    with PPXSimulator(command=served_command("endless"), env=served_env(), timeout=10,
                      max_choices=2000) as sim:
        start = time.monotonic()
        with pytest.raises(TraceTooLongError, match=r"exceeded 2,000 random choices, 1,000 of "
                                                    r"them at 'endless\+\d+'"):
            run_trace(sim, et.Controller(np.random.default_rng(0)), retries=3)
        assert time.monotonic() - start < 10
        assert sim.launches == 1  # not retried: the same seed would loop again
        # The simulator is reset, not left in its endless trace: the next trace starts afresh.
        with pytest.raises(TraceTooLongError):
            run_trace(sim, et.Controller(np.random.default_rng(1)), retries=0)
        assert sim.launches == 2
    with pytest.raises(ValueError, match="max_choices"):
        PPXSimulator("ipc:///nowhere", max_choices=0)
