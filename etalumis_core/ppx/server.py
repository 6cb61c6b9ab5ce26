"""The simulator side of PPX: serve any etalumis :class:`Simulator` to PPX engines.

:func:`serve` binds a ZeroMQ REP socket and answers engines exactly as a PPX 1.0.0 simulator
does: ``Handshake`` -> ``HandshakeResult``; ``Run`` -> the simulator runs one trace with a handler
that turns every ``sample``/``observe``/``tag`` into a ``Sample``/``Observe``/``Tag`` message and
waits for the engine's answer, then ``RunResult``. The simulator sees exactly the values the
engine sent (decoded from ``SampleResult`` and given the type the distribution itself would
return: ``int`` for a discrete scalar, ``float`` for a continuous one, arrays of the batch shape),
so a served trace equals the in-process trace for the same engine and seed.

Out of step
-----------
* A ``Handshake`` or ``Run`` arriving in the middle of a trace means the engine gave up on it (a
  timeout, a restart): the trace is abandoned and the new request is answered.
* Anything else the simulator side does not expect (a result of the wrong kind, a buffer that
  does not decode) is answered with ``Reset`` and the trace is abandoned.
* An exception inside the simulator is logged and answered with ``Reset`` (PPX has no error
  message), and the server waits for the next ``Run``.

``factor`` has no PPX 1.0.0 message, so a served simulator that calls :func:`etalumis_core.factor`
fails that trace (logged, ``Reset``) with an error saying so. (An ``Observe`` of a Normal with a
chosen standard deviation could carry a log weight, but an engine would record it as an
observation with a distribution, not as a factor; we do not pretend.)
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import zmq

from ..errors import ProtocolError
from . import wire
from .wire import Handshake, ObserveResult, Run, SampleResult, TagResult, decode

log = logging.getLogger(__name__)

SYSTEM_NAME = "etalumis"
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


class _Abandon(BaseException):
    """Unwinds a simulator out of a trace the engine gave up on. A BaseException so that the
    simulator's own ``except Exception`` blocks do not swallow it."""

    def __init__(self, pending: bytes | None, reason: str) -> None:
        super().__init__(reason)
        self.pending = pending  # a request to answer at the top level (Handshake or Run)
        self.reason = reason


def _as_drawn(distribution: Any, value: Any) -> Any:
    """``value`` as ``distribution.sample`` would have returned it."""
    discrete = getattr(distribution, "discrete", False)
    if type(value) is float:
        if getattr(distribution, "batch_shape", ()) == ():
            return int(value) if discrete else value
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        shape = getattr(distribution, "batch_shape", value.shape)
        if shape == () and value.size == 1:
            v = float(value.reshape(()))
            return int(v) if discrete else v
        if value.shape != shape and value.size == int(np.prod(shape)):
            value = value.reshape(shape)
        return value.astype(np.int64) if discrete else value
    return value


class _EngineGone(BaseException):
    """The engine that launched this simulator died (BaseException: no trace may swallow it)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _receive(sock: zmq.Socket, engine_pid: int | None) -> bytes:
    """The next request. A simulator launched by an engine (which names its pid in
    ``ETALUMIS_PPX_ENGINE_PID``) exits when that engine is gone, instead of waiting forever
    as an orphan: an engine killed with SIGKILL cannot stop it."""
    while True:
        try:
            return sock.recv()
        except zmq.Again:
            if engine_pid is not None and not _alive(engine_pid):
                raise _EngineGone from None


class _ServeHandler:
    """The runtime Handler of a served trace: every message goes to the engine."""

    def __init__(self, sock: zmq.Socket, engine_pid: int | None = None) -> None:
        self._sock = sock
        self._engine_pid = engine_pid

    def _ask(self, request: bytes, expected: type, after: str) -> Any:
        sock = self._sock
        sock.send(request)
        raw = _receive(sock, self._engine_pid)
        try:
            msg = decode(raw)
        except ProtocolError as e:
            raise _Abandon(None, f"undecodable reply to {after}: {e}") from None
        if type(msg) is not expected:
            if type(msg) is Handshake or type(msg) is Run:
                raise _Abandon(raw, f"the engine sent {type(msg).__name__} instead of "
                                    f"{expected.__name__} (it gave up on the trace)")
            raise _Abandon(None, f"expected {expected.__name__} after {after}, got "
                                 f"{type(msg).__name__}")
        return msg

    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any:
        request = wire.encode(wire.Sample(base, name, distribution, control))
        msg = self._ask(request, SampleResult, f"Sample at {base!r}")
        if msg.result is None:
            raise _Abandon(None, f"empty SampleResult for Sample at {base!r}")
        return _as_drawn(distribution, msg.result)

    def observe(self, base: str, distribution: Any, value: Any, name: str | None) -> None:
        request = wire.encode(wire.Observe(base, name, distribution, value))
        self._ask(request, ObserveResult, f"Observe at {base!r}")

    def tag(self, base: str, value: Any, name: str | None) -> None:
        request = wire.encode(wire.Tag(base, name, value))
        self._ask(request, TagResult, f"Tag at {base!r}")

    def factor(self, base: str, log_weight: float, name: str | None) -> None:
        raise ProtocolError(
            f"factor at {base!r} (name {name!r}) cannot be sent to a PPX engine: PPX 1.0.0 has "
            f"no factor message; express the soft constraint as an observe of a distribution")


def _result_bytes(result: Any) -> bytes:
    try:
        return wire.encode(wire.RunResult(result))
    except ProtocolError:
        # A result that is not numbers (a dict, an object) has no tensor form: send none.
        log.debug("simulator result of type %s sent as an empty tensor", type(result).__name__)
        return wire.encode(wire.RunResult(None))


def serve(simulator: Any, address: str = DEFAULT_ADDRESS, *, max_traces: int | None = None,
          model_name: str | None = None) -> int:
    """Serve ``simulator`` (an etalumis :class:`Simulator` or a plain function) as a PPX 1.0.0
    simulator on a REP socket bound to ``address`` (``tcp://...`` or ``ipc://...``; loopback by
    default). Returns after ``max_traces`` completed traces (forever if None), with the number
    of traces served."""
    from ..simulator import as_simulator

    sim = as_simulator(simulator)
    model = model_name if model_name is not None else sim.name
    handshake_result = wire.encode(wire.HandshakeResult(SYSTEM_NAME, model))
    context = zmq.Context.instance()
    sock = context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 2000)  # let the last RunResult reach the engine before exit
    sock.bind(address)
    log.info("serving simulator %r over PPX at %s", model, address)
    engine_pid = int(os.environ["ETALUMIS_PPX_ENGINE_PID"]) if os.environ.get(
        "ETALUMIS_PPX_ENGINE_PID") else None
    if engine_pid is not None:
        sock.setsockopt(zmq.RCVTIMEO, 1000)  # wake up each second to check on the engine
    handler = _ServeHandler(sock, engine_pid)
    traces = 0
    pending: bytes | None = None
    try:
        while max_traces is None or traces < max_traces:
            raw = pending if pending is not None else _receive(sock, engine_pid)
            pending = None
            try:
                msg = decode(raw)
            except ProtocolError as e:
                log.warning("answering an undecodable request with Reset: %s", e)
                sock.send(wire.RESET)
                continue
            t = type(msg)
            if t is Handshake:
                log.debug("handshake from %r", msg.system_name)
                sock.send(handshake_result)
            elif t is Run:
                try:
                    result = sim.run(handler)
                except _Abandon as e:
                    log.warning("trace abandoned: %s", e.reason)
                    if e.pending is not None:
                        pending = e.pending
                    else:
                        sock.send(wire.RESET)
                    continue
                except Exception:  # the simulator's own failure: the engine must hear of it
                    log.exception("simulator %r failed during a trace; answering Reset", model)
                    sock.send(wire.RESET)
                    continue
                sock.send(_result_bytes(result))
                traces += 1
            else:
                log.warning("answering an unexpected %s with Reset", t.__name__)
                sock.send(wire.RESET)
    except _EngineGone:
        log.warning("the engine (pid %d) that launched this simulator is gone; exiting",
                    engine_pid)
    finally:
        sock.close()
        sim.close()
    return traces
