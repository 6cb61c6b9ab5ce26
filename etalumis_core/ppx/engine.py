"""The engine side of PPX: a remote simulator process as an etalumis :class:`Simulator`.

:class:`PPXSimulator` holds a ZeroMQ REQ socket connected to a simulator that binds a REP
socket (PPX turns the usual roles around: the simulator's messages arrive as replies). It either
connects to a simulator already running at ``address`` or launches ``command`` itself.

Never hang, never lose a trace
------------------------------
The protocol has no timeout and no error message, so the engine supplies both:

* every wait for the simulator is bounded by ``timeout`` seconds (``startup_timeout`` for the
  handshake after a launch), and a launched process is polled every ``poll_interval`` seconds
  while we wait, so that its death is noticed at once (with its exit code) rather than after
  the timeout;
* any failure during a trace -- the process died, it stalled, it sent a ``Reset``, a message of
  the wrong type, or a buffer that does not decode -- closes the REQ socket (a REQ socket that
  missed a reply is stuck for good) and kills a launched process; the next :meth:`run` starts
  a fresh one and handshakes again. The failure is raised as
  :class:`~etalumis_core.errors.SimulatorError`, or for protocol violations as
  :class:`~etalumis_core.errors.SimulatorProtocolError`, which is both a ``ProtocolError`` and a
  ``SimulatorError``: :func:`etalumis_core.simulator.run_trace` reruns such a trace from the
  same random state, so that a retried trace equals the undisturbed one;
* an error raised by the controller itself (for example a missing observation) is not the
  simulator's fault: the engine finishes the simulator's trace with prior draws so that both
  sides stay in step (or, if that fails, resets as above) and lets the error propagate;
* :meth:`close` terminates a launched process (SIGTERM to its process group, SIGKILL after
  ``grace`` seconds) and closes the socket; the same happens when the object is garbage
  collected or the interpreter exits, so no simulator process outlives its engine.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from typing import Any, Mapping, Sequence

import numpy as np
import zmq

from ..errors import ProtocolError, SimulatorError, SimulatorProtocolError, TraceTooLongError
from ..controller import DEFAULT_MAX_CHOICES
from ..simulator import Simulator
from . import wire
from .server import SESSION_PREFIX
from .wire import (HandshakeResult, Observe, Reset, RunResult, Sample, Tag, decode,
                   encode_sample_result)

log = logging.getLogger(__name__)



def free_tcp_address(host: str = "127.0.0.1") -> str:
    """A ``tcp://`` address on a port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def free_ipc_address() -> str:
    """An ``ipc://`` address in a fresh private directory (short enough for sun_path)."""
    directory = tempfile.mkdtemp(prefix="ppx-")
    return f"ipc://{directory}/sim"


class _Resources:
    """What must be released even if the PPXSimulator is never closed (see weakref.finalize)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.socket: zmq.Socket | None = None
        self.ipc_dirs: list[str] = []

    def close_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def kill(self, grace: float) -> int | None:
        """Stop the launched process and its process group; return its exit code."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                proc.wait(grace if grace > 0 else 5.0)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        # Children the simulator left behind in its group go too.
        _signal_group(proc, signal.SIGKILL)
        return proc.returncode

    def remove_ipc_dirs(self) -> None:
        for d in self.ipc_dirs:
            try:
                for f in os.listdir(d):
                    os.unlink(os.path.join(d, f))
                os.rmdir(d)
            except OSError:
                pass
        self.ipc_dirs.clear()

    def release(self, grace: float = 2.0) -> None:
        self.close_socket()
        self.kill(grace)
        self.remove_ipc_dirs()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class PPXSimulator(Simulator):
    """A simulator that speaks PPX 1.0.0 in another process (any language).

    Parameters
    ----------
    address:
        Where the simulator's REP socket is bound (``tcp://host:port`` or ``ipc://path``).
        With ``command`` and no address, a free ``ipc://`` path (or, with ``transport="tcp"``,
        a free loopback port) is chosen for every launch.
    command:
        Launch the simulator: a list of program and arguments (or a string, split like a shell
        would). The string ``{address}`` in any argument is replaced by the address; if no
        argument contains it, the address is appended as the last argument. The address is also
        in the environment as ``ETALUMIS_PPX_ADDRESS``.
    env, cwd:
        Extra environment variables (added to this process's environment) and working directory
        of the launched simulator.
    timeout:
        Seconds to wait for any one reply during a trace before declaring the simulator stalled.
    startup_timeout:
        Seconds to wait for the handshake (a launched simulator may take long to start);
        default ``max(timeout, 60)``.
    poll_interval:
        How often a launched process's liveness is checked while waiting.
    grace:
        Seconds :meth:`close` gives a launched process between SIGTERM and SIGKILL.
    name, observations:
        The simulator's name (default: the model name it reports in the handshake) and the
        observation names and shapes it declares.
    stdout, stderr:
        Passed to :class:`subprocess.Popen` for a launched simulator (default: inherited).
    max_choices:
        The most ``Sample``/``Observe``/``Tag`` messages one trace may send (a million by
        default); the controller fails a trace that sends more with
        :class:`~etalumis_core.errors.TraceTooLongError` naming the address that repeats most,
        and the simulator is reset, instead of the trace growing without bound. Not retried:
        the same seed would loop again.
    session:
        The engine session this simulator belongs to, sent with every handshake, so that an
        etalumis server (which serves one engine session at a time) recognises the engine when
        it reconnects. Default: one session per process, so that every PPXSimulator of one run
        shares it; give two engines in one process (two threads) sessions of their own.
    """

    restartable = True

    def __init__(self, address: str | None = None, command: str | Sequence[str] | None = None, *,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 timeout: float = 60.0, startup_timeout: float | None = None,
                 poll_interval: float = 0.1, grace: float = 2.0, transport: str = "ipc",
                 name: str | None = None, observations: Mapping[str, tuple] | None = None,
                 stdout: Any = None, stderr: Any = None,
                 max_choices: int = DEFAULT_MAX_CHOICES, session: str | None = None) -> None:
        if address is None and command is None:
            raise ValueError("PPXSimulator needs the address of a running simulator, or a "
                             "command to launch one")
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport must be 'ipc' or 'tcp', got {transport!r}")
        self.command = shlex.split(command) if isinstance(command, str) else (
            list(command) if command is not None else None)
        self._fixed_address = address
        self.address = address
        self.env = dict(env or {})
        self.cwd = cwd
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout if startup_timeout is not None
                                     else max(self.timeout, 60.0))
        self.poll_interval = float(poll_interval)
        self.grace = float(grace)
        self.transport = transport
        if int(max_choices) < 1:
            raise ValueError(f"max_choices must be a positive integer, got {max_choices!r}")
        self.max_choices = int(max_choices)
        self.session = session
        self._stdout, self._stderr = stdout, stderr
        self._name = name
        if observations is not None:
            self.observations = dict(observations)
        self.system_name: str | None = None
        self.model_name: str | None = None
        self.launches = 0
        self._context = zmq.Context.instance()
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release, 0.5)
        self._closed = False

    # -- naming --------------------------------------------------------------------------------
    @property
    def name(self) -> str:  # type: ignore[override]
        if self._name is not None:
            return self._name
        if self.model_name:
            return self.model_name
        return f"ppx:{self.address or ' '.join(self.command or [])}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self) -> str:
        where = f"command={self.command!r}" if self.command else f"address={self.address!r}"
        return f"PPXSimulator({where})"

    # -- process and connection ----------------------------------------------------------------
    def _describe(self) -> str:
        if self.command:
            return f"simulator {shlex.join(self.command)!r} at {self.address}"
        return f"simulator at {self.address}"

    def _launch(self) -> None:
        address = self._fixed_address
        if address is None:
            address = free_tcp_address() if self.transport == "tcp" else free_ipc_address()
            if address.startswith("ipc://"):
                self._res.ipc_dirs.append(os.path.dirname(address[len("ipc://"):]))
        self.address = address
        assert self.command is not None
        args = [a.replace("{address}", address) for a in self.command]
        if not any("{address}" in a for a in self.command):
            args.append(address)
        env = dict(os.environ)
        env.update(self.env)
        env["ETALUMIS_PPX_ADDRESS"] = address
        env["ETALUMIS_PPX_ENGINE_PID"] = str(os.getpid())  # an etalumis server exits with us
        try:
            # A session of its own, so that killing the group also ends anything it spawned.
            self._res.process = subprocess.Popen(args, env=env, cwd=self.cwd,
                                                 stdin=subprocess.DEVNULL, stdout=self._stdout,
                                                 stderr=self._stderr, start_new_session=True)
        except OSError as e:
            raise SimulatorError(f"cannot launch simulator {shlex.join(args)!r}: {e}") from e
        self.launches += 1
        log.debug("launched simulator pid %d: %s", self._res.process.pid, shlex.join(args))

    def _connect(self) -> None:
        if self._closed:
            raise SimulatorError(f"{self._describe()} is closed")
        if self.command is not None and self._res.process is None:
            self._launch()
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        # Short receive slices: between them the launched process's liveness is checked.
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(self.poll_interval * 1000)))
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout * 1000)))
        sock.connect(self.address)
        self._res.socket = sock
        self._handshake(self.startup_timeout)

    def _handshake(self, timeout: float) -> None:
        try:
            token = self.session if self.session is not None else _process_session()
            request = wire.encode(wire.Handshake(SESSION_PREFIX + token))
            reply = self._exchange(request, timeout, "the handshake")
            msg = decode(reply)
            if type(msg) is Reset:
                raise ProtocolError(f"the simulator refused the handshake with Reset"
                                    f"{': ' + msg.reason if msg.reason else ''}")
            if type(msg) is not HandshakeResult:
                raise ProtocolError(f"expected HandshakeResult in reply to Handshake, got "
                                    f"{type(msg).__name__}")
        except ProtocolError as e:
            self._hard_reset()
            raise SimulatorProtocolError(f"{self._describe()}: {e}") from e
        except BaseException:
            self._hard_reset()
            raise
        self.system_name, self.model_name = msg.system_name, msg.model_name
        log.debug("connected to %s: system %r, model %r", self.address, msg.system_name,
                  msg.model_name)

    # -- health ----------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The launched simulator's process id, while it runs."""
        proc = self._res.process
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_alive(self) -> bool:
        """Whether a launched simulator is running (True for one we only connect to: only a
        handshake can tell)."""
        return self.command is None or self.pid is not None

    def health_check(self, restart: bool = True) -> dict:
        """Between traces: make sure the simulator is up and answering. A running simulator is
        sent a handshake (PPX's only "are you there"), not relaunched, since initialising a
        large simulator is expensive; one that is down or does not answer is restarted (or,
        with ``restart=False``, reported with :class:`SimulatorError`)."""
        restarted = False
        if not self.is_alive() or self._res.socket is None:
            self.restart()
            restarted = True
        else:
            try:
                self._handshake(self.timeout)
            except SimulatorError as error:
                if not restart:
                    raise SimulatorError(f"{self._describe()} failed its health check: "
                                         f"{error}") from error
                log.warning("%s failed its health check (%s); restarting it", self._describe(),
                            error)
                self.restart()
                restarted = True
        return {"pid": self.pid, "launches": self.launches, "model_name": self.model_name,
                "system_name": self.system_name, "restarted": restarted}

    def _hard_reset(self) -> None:
        """After any failure: the socket is out of step and a launched process is suspect."""
        self._res.close_socket()
        self._res.kill(0.0)
        self._res.remove_ipc_dirs()

    def restart(self) -> None:
        """Kill a launched simulator and start it again (or reconnect to ``address``)."""
        self._hard_reset()
        self._connect()

    def _check_alive(self, waited: float, during: str) -> None:
        proc = self._res.process
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
                   else f"exited with code {code}")
            raise SimulatorError(f"{self._describe()} {how} during {during} (after waiting "
                                 f"{waited:.2f} s for its message)")

    def _exchange(self, request: bytes, timeout: float, during: str) -> bytes:
        """Send one request and return the reply, within ``timeout`` seconds."""
        sock = self._res.socket
        try:
            sock.send(request, copy=True)
        except zmq.Again:
            raise SimulatorError(f"{self._describe()} did not accept a message within "
                                 f"{timeout:.3g} s during {during}") from None
        try:
            return sock.recv(copy=True)
        except zmq.Again:
            pass
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            self._check_alive(waited, during)
            if waited >= timeout:
                raise SimulatorError(
                    f"{self._describe()} stalled: no message for {waited:.2f} s during {during} "
                    f"(timeout {timeout:.3g} s; raise PPXSimulator(timeout=...) if it is merely "
                    f"slow)")
            try:
                return sock.recv(copy=True)
            except zmq.Again:
                continue

    # -- one trace -----------------------------------------------------------------------------
    def run(self, controller: Any) -> Any:
        if self._res.socket is None:
            self._connect()
        request = wire.RUN
        during = "Run"
        exchange = self._exchange
        timeout = self.timeout
        msg: Any = None
        try:
            while True:
                msg = decode(exchange(request, timeout, during))
                t = type(msg)
                if t is Sample:
                    during = f"Sample at {msg.address!r}"
                    request = encode_sample_result(controller.sample(
                        msg.address, msg.distribution, msg.name, msg.control))
                elif t is Observe:
                    during = f"Observe at {msg.address!r}"
                    controller.observe(msg.address, msg.distribution, msg.value, msg.name)
                    request = wire.OBSERVE_RESULT
                elif t is RunResult:
                    return msg.result
                elif t is Tag:
                    during = f"Tag at {msg.address!r}"
                    controller.tag(msg.address, msg.value, msg.name)
                    request = wire.TAG_RESULT
                elif t is Reset:
                    why = msg.reason or "it received something it did not expect"
                    raise ProtocolError(f"the simulator sent Reset ({why}) after {during}; "
                                        f"this trace's result is refused")
                else:
                    raise ProtocolError(f"unexpected {t.__name__} message after {during}")
        except ProtocolError as e:
            self._hard_reset()
            raise SimulatorProtocolError(f"{self._describe()}: {e}") from e
        except (SimulatorError, TraceTooLongError):
            # A trace past its limit may never end: start afresh rather than finish it.
            self._hard_reset()
            raise
        except Exception:
            # The controller refused a message: the simulator is waiting for our answer.
            self._finish_trace(msg)
            raise
        except BaseException:
            self._hard_reset()
            raise

    def _finish_trace(self, pending: Any) -> None:
        """Bring the simulator to the end of the trace the controller abandoned, answering with
        prior draws, so that the next Run finds it in step; reset everything if that fails."""
        rng = np.random.default_rng()
        done = False
        try:
            for _ in range(100_000):
                pending = decode(self._exchange(_answer_pending(pending, rng), self.timeout,
                                                "finishing an abandoned trace"))
                t = type(pending)
                if t is RunResult:
                    done = True
                    break
                if t is not Sample and t is not Observe and t is not Tag:
                    break
        except Exception:  # noqa: BLE001 - any failure here just means: start afresh
            log.debug("could not finish an abandoned trace of %s", self._describe(),
                      exc_info=True)
        finally:
            if not done:
                self._hard_reset()

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Terminate a launched simulator (SIGTERM, SIGKILL after ``grace`` s) and close the
        socket. Nothing is sent: PPX has no goodbye message."""
        self._closed = True
        self._res.release(self.grace)
        self._finalizer.detach()


_SESSIONS: dict[int, str] = {}


def _process_session() -> str:
    """This process's session token (a forked worker gets its own)."""
    pid = os.getpid()
    if pid not in _SESSIONS:
        _SESSIONS[pid] = f"{socket.gethostname()}/{pid}/{os.urandom(6).hex()}"
    return _SESSIONS[pid]


def _answer_pending(pending: Any, rng: np.random.Generator) -> bytes:
    """The reply the simulator waits for after sending ``pending``."""
    t = type(pending)
    if t is Sample:
        return encode_sample_result(pending.distribution.sample(rng))
    if t is Tag:
        return wire.TAG_RESULT
    return wire.OBSERVE_RESULT
