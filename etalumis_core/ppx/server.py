"""The simulator side of PPX: serve any etalumis :class:`Simulator` to PPX engines.

:func:`serve` binds a ZeroMQ socket and answers engines exactly as a PPX 1.0.0 simulator
does: ``Handshake`` -> ``HandshakeResult``; ``Run`` -> the simulator runs one trace with a handler
that turns every ``sample``/``observe``/``tag`` into a ``Sample``/``Observe``/``Tag`` message and
waits for the engine's answer, then ``RunResult``. The simulator sees exactly the values the
engine sent (decoded from ``SampleResult`` and given the type the distribution itself would
return: ``int`` for a discrete scalar, ``float`` for a continuous one, arrays of the batch shape),
so a served trace equals the in-process trace for the same engine and seed.

One engine at a time
--------------------
Two engines interleaving their messages on one simulator would corrupt each other's traces, so
a served simulator belongs to one engine *session* at a time. The socket is a ROUTER (to REQ
engines, such as pyprob's or etalumis's, it behaves exactly like the REP socket of PPX), which
tells engines apart:

* the first engine to send a ``Handshake`` owns the session;
* any other engine is answered at once with a ``Reset`` whose reason (a string field that
  other PPX readers ignore) is ``busy: serving another engine since <UTC time>``; the owner's
  trace is not touched, and an etalumis engine raises that reason as its error;
* the session ends when its engine has sent nothing for ``session_timeout`` seconds (30 by
  default) *and* another engine handshakes: an engine that closed or died frees the simulator
  that long after its last message. A trace the old engine left unfinished is abandoned, and
  the old engine's next message is refused as busy, so it can never receive a result made of
  two engines' answers (it fails the trace and retries it from the same seed);
* a fresh ``Handshake`` from the owner restarts its session; an etalumis engine names a session
  token in its Handshake's ``system_name`` (``etalumis session TOKEN``; one token per process
  by default), so that when it reconnects on a new socket after a failure, or a run builds a
  second ``PPXSimulator`` for the same address, it is recognised and keeps its session.

Out of step
-----------
* Anything but exactly one frame (a multipart message, from any peer) is answered with ``Reset``
  and the server keeps serving.
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

import ipaddress
import logging
import os
import time
from typing import Any

import numpy as np
import zmq

from ..errors import ConfigError, ProtocolError
from . import wire
from .wire import Handshake, ObserveResult, Run, SampleResult, TagResult, decode

log = logging.getLogger(__name__)

SYSTEM_NAME = "etalumis"
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_SESSION_TIMEOUT = 30.0
SESSION_PREFIX = "etalumis session "
_SNDMORE = zmq.SNDMORE


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


def _utc(wall_time: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_time))


class _Channel:
    """The ROUTER socket and the one engine session it serves.

    A ROUTER socket sees who sent each message (a REQ peer's frames arrive as ``[peer id, b"",
    payload]``), so the server can belong to one engine at a time: the first engine that sends
    a ``Handshake`` owns the session, and every other peer is answered at once with a ``Reset``
    whose reason says ``busy: serving another engine since ...``, without touching the owner's
    trace. :meth:`next_request` returns only the owner's messages (or the handshake of an engine
    that takes over an expired session, flagged so that a trace in progress is abandoned)."""

    def __init__(self, sock: zmq.Socket, engine_pid: int | None, session_timeout: float) -> None:
        self._sock = sock
        self._engine_pid = engine_pid
        self._session_timeout = session_timeout
        self._owner: bytes | None = None      # the ROUTER id of the engine's socket
        self._owner_key: str | None = None    # its session token, if it sent one
        self._envelope: list[bytes] = []
        self._since = 0.0       # wall time the session began (for the busy message)
        self._last_seen = 0.0   # monotonic time of the owner's last message

    def send(self, payload: bytes) -> None:
        """Answer the owner's last request."""
        send = self._sock.send
        for frame in self._envelope:  # (send_multipart costs more per message)
            send(frame, _SNDMORE)
        send(payload)

    def _receive(self) -> list[bytes]:
        # A simulator launched by an engine (which names its pid in ETALUMIS_PPX_ENGINE_PID)
        # exits when that engine is gone instead of waiting forever as an orphan: an engine
        # killed with SIGKILL cannot stop it.
        while True:
            try:
                return self._sock.recv_multipart()
            except zmq.Again:  # only with a receive timeout, set when there is an engine pid
                if self._engine_pid is not None and not _alive(self._engine_pid):
                    raise _EngineGone from None

    def _refuse(self, envelope: list[bytes], reason: str) -> None:
        self._sock.send_multipart([*envelope, wire.encode(wire.Reset(reason))])

    def _expired(self) -> bool:
        return time.monotonic() - self._last_seen > self._session_timeout

    def next_request(self) -> tuple[bytes | None, bool]:
        """The owner's next request: ``(payload, new_session)``. ``payload`` is None when the
        owner sent anything but exactly one frame (answer it with ``Reset``); ``new_session``
        is true when an engine has just begun a session with this request (a Handshake)."""
        while True:
            frames = self._receive()
            # The envelope is everything up to the empty delimiter a REQ peer puts in; a peer
            # without one (a DEALER) is answered on its id alone.
            if len(frames) == 3 and not frames[1]:  # a REQ peer's request: the common case
                cut = 2
            else:
                cut = frames.index(b"", 1) + 1 if b"" in frames[1:] else 1
            envelope, body = frames[:cut], frames[cut:]
            peer = frames[0]
            if peer == self._owner:
                self._envelope, self._last_seen = envelope, time.monotonic()
                return (body[0] if len(body) == 1 else None), False
            handshake = _handshake(body[0]) if len(body) == 1 else None
            if handshake is None:
                log.warning("answering a %d-frame message that is no Handshake, from a peer "
                            "outside the session, with Reset", len(body))
                self._refuse(envelope, self._busy() if self._owner is not None else
                             "no session: send a Handshake first")
                continue
            key = session_key(handshake.system_name)
            reconnect = key is not None and key == self._owner_key
            if self._owner is not None and not reconnect and not self._expired():
                log.warning("refusing a second engine: %s", self._busy())
                self._refuse(envelope, self._busy())
                continue
            if self._owner is not None and not reconnect:
                log.warning("the engine session begun at %s was idle for more than %g s; "
                            "a new engine takes over", _utc(self._since), self._session_timeout)
            if not reconnect:
                self._since = time.time()
            self._owner, self._owner_key, self._envelope = peer, key, envelope
            self._last_seen = time.monotonic()
            return body[0], True

    def _busy(self) -> str:
        return f"busy: serving another engine since {_utc(self._since)}"


def _handshake(payload: bytes) -> Handshake | None:
    try:
        msg = decode(payload)
    except ProtocolError:
        return None
    return msg if type(msg) is Handshake else None


def session_key(system_name: str) -> str | None:
    """The session token in a Handshake's ``system_name`` (``"etalumis session TOKEN"``, as
    etalumis engines write it), or None. An engine that reconnects on a new socket (after a
    stall, say) sends the same token and keeps its session; other engines (pyprob's) have
    none and are told apart by their socket alone."""
    if system_name.startswith(SESSION_PREFIX):
        return system_name[len(SESSION_PREFIX):] or None
    return None


class _ServeHandler:
    """The runtime Handler of a served trace: every message goes to the engine."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def _send(self, payload: bytes) -> None:
        self._channel.send(payload)

    def _ask(self, request: bytes, expected: type, after: str) -> Any:
        self._channel.send(request)
        raw, new_session = self._channel.next_request()
        if new_session:
            raise _Abandon(raw, "another engine took over the idle session")
        if raw is None:
            raise _Abandon(None, f"a multi-frame message in reply to {after}")
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
          model_name: str | None = None,
          session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> int:
    """Serve ``simulator`` (an etalumis :class:`Simulator` or a plain function) as a PPX 1.0.0
    simulator bound to ``address`` (``tcp://...`` or ``ipc://...``; loopback by default), to one
    engine session at a time (see the module's docstring; ``session_timeout`` is how long an
    idle session keeps other engines out). Returns after ``max_traces`` completed traces
    (forever if None), with the number of traces served."""
    from ..simulator import as_simulator

    sim = as_simulator(simulator)
    model = model_name if model_name is not None else sim.name
    handshake_result = wire.encode(wire.HandshakeResult(SYSTEM_NAME, model))
    context = zmq.Context.instance()
    # ROUTER, not REP: it answers REQ engines exactly as REP does, but sees which engine sent
    # each message, so a second engine is refused instead of being answered in the middle of
    # the first one's trace.
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 2000)  # let the last RunResult reach the engine before exit
    try:
        sock.bind(address)
    except zmq.ZMQError as error:
        sock.close(0)
        raise ConfigError(f"cannot serve at {address}: {error.strerror}; choose another address "
                          f"(e.g. another port) or stop what holds this one") from None
    _warn_if_exposed(address)
    log.info("serving simulator %r over PPX at %s", model, address)
    engine_pid = int(os.environ["ETALUMIS_PPX_ENGINE_PID"]) if os.environ.get(
        "ETALUMIS_PPX_ENGINE_PID") else None
    if engine_pid is not None:
        sock.setsockopt(zmq.RCVTIMEO, 1000)  # wake up each second to check on the engine
    channel = _Channel(sock, engine_pid, session_timeout)
    handler = _ServeHandler(channel)
    traces = 0
    pending: bytes | None = None
    try:
        while max_traces is None or traces < max_traces:
            if pending is not None:
                raw, pending = pending, None
            else:
                raw, _ = channel.next_request()
            if raw is None:
                log.warning("answering a multi-frame request with Reset")
                channel.send(wire.RESET)
                continue
            try:
                msg = decode(raw)
            except ProtocolError as e:
                log.warning("answering an undecodable request with Reset: %s", e)
                channel.send(wire.RESET)
                continue
            t = type(msg)
            if t is Handshake:
                log.debug("handshake from %r", msg.system_name)
                channel.send(handshake_result)
            elif t is Run:
                try:
                    result = sim.run(handler)
                except _Abandon as e:
                    log.warning("trace abandoned: %s", e.reason)
                    if e.pending is not None:
                        pending = e.pending
                    else:
                        channel.send(wire.RESET)
                    continue
                except Exception:  # the simulator's own failure: the engine must hear of it
                    log.exception("simulator %r failed during a trace; answering Reset", model)
                    channel.send(wire.RESET)
                    continue
                channel.send(_result_bytes(result))
                traces += 1
            else:
                log.warning("answering an unexpected %s with Reset", t.__name__)
                channel.send(wire.RESET)
    except _EngineGone:
        log.warning("the engine (pid %d) that launched this simulator is gone; exiting",
                    engine_pid)
    finally:
        sock.close()
        sim.close()
    return traces


def _warn_if_exposed(address: str) -> None:
    """PPX has no authentication: whoever reaches the port controls the simulator."""
    if not address.startswith("tcp://"):
        return
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:  # an interface name, a host name or "*": not provably loopback
        pass
    log.warning("serving PPX on %s, which is not a loopback address: PPX has no "
                "authentication, so anyone who can reach it can drive this simulator (and read "
                "what it computes); bind tcp://127.0.0.1 unless the network is trusted", address)
