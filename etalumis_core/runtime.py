"""The functions a simulator calls, and how they reach whoever runs the simulator.

``sample``/``observe``/``tag``/``factor`` dispatch to the innermost active *handler*: a
:class:`~etalumis_core.controller.Controller` when an engine runs the simulator in-process, or the
PPX simulator side when the simulator is served to a remote engine. With no handler active they
run the simulator forward.

Addresses
---------
A call site's *base address* is the chain of frames from the simulator's entry function down to
the call, each written ``function+line``, where ``line`` is the line of the call counted from the
first line of that function (``co_firstlineno``), joined by ``/``: ``model+3/decay+12``.
Line offsets, unlike bytecode offsets, depend only on the source text, so addresses are identical
across runs, processes and Python versions, and moving a whole function within its file leaves its
addresses unchanged. Comprehension frames (which Python 3.12 inlines and earlier versions do not)
are skipped for the same reason. Two calls on one line share a base and are told apart by the
instance counter; pass ``address=`` to name a site explicitly. The handler appends
``__{distribution}__{instance}`` where the instance counts how often the base occurred in the
trace (the PPX convention), so loops and recursion give distinct addresses.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol

_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


class Handler(Protocol):
    """Whatever answers a running simulator's messages (one per trace)."""

    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any: ...

    def observe(self, base: str, distribution: Any, value: Any, name: str | None) -> Any: ...

    def tag(self, base: str, value: Any, name: str | None) -> None: ...

    def factor(self, base: str, log_weight: float, name: str | None) -> None: ...


class _State(threading.local):
    # Thread-local so that executors running simulators in threads (Dask workers) stay apart.
    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.forward_rng: Any = None  # a numpy Generator, made on first forward use


_state = _State()


def _enter_simulator(handler: Handler, fn: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``fn`` with ``handler`` active. Its frame bounds the address walk."""
    handlers = _state.handlers
    handlers.append(handler)
    try:
        return fn(*args, **kwargs)
    except Exception as error:
        _note_trace(error, handler)
        raise
    finally:
        handlers.pop()


def _note_trace(error: Exception, handler: Handler) -> None:
    """Add which trace raised (and its seed, so it can be reproduced) to a simulator's
    exception; a note travels with the exception out of worker processes."""
    describe = getattr(handler, "describe_trace", None)
    if describe is not None and not getattr(error, "_etalumis_noted", False):
        error.add_note(f"raised by {describe()}")
        error._etalumis_noted = True  # type: ignore[attr-defined]


_BOUNDARY = _enter_simulator.__code__


def call_site_address(depth: int) -> str:
    """Base address of the frame ``depth`` levels above the caller (see the module docstring)."""
    frame = sys._getframe(depth + 1)
    parts = []
    while frame is not None:
        code = frame.f_code
        if code is _BOUNDARY:
            break
        name = code.co_name
        if name not in _COMPREHENSIONS:
            parts.append(f"{name}+{frame.f_lineno - code.co_firstlineno}")
        frame = frame.f_back
    parts.reverse()
    return "/".join(parts)


def _forward_rng() -> Any:
    if _state.forward_rng is None:
        seed_forward(None)
    return _state.forward_rng


def sample(distribution: Any, name: str | None = None, address: str | None = None,
           control: bool = True) -> Any:
    """Draw a random choice. The engine decides its value; ``control=False`` leaves it to the prior."""
    handlers = _state.handlers
    if not handlers:
        return distribution.sample(_forward_rng())
    base = address if address is not None else call_site_address(1)
    return handlers[-1].sample(base, distribution, name, control)


def observe(distribution: Any, value: Any = None, name: str | None = None,
            address: str | None = None) -> Any:
    """Condition on ``value`` under ``distribution``; with ``value=None`` the engine supplies the
    value observed under ``name``. Returns the value conditioned on (drawn from
    ``distribution`` when a forward run simulates the observation), or None where the engine
    does not say (outside any engine; a simulator served over PPX)."""
    handlers = _state.handlers
    if not handlers:
        return None
    base = address if address is not None else call_site_address(1)
    return handlers[-1].observe(base, distribution, value, name)


def tag(value: Any, name: str, address: str | None = None) -> None:
    """Record a deterministic value in the trace, so that posteriors can summarise it."""
    handlers = _state.handlers
    if not handlers:
        return
    base = address if address is not None else call_site_address(1)
    handlers[-1].tag(base, value, name)


def factor(log_weight: float, name: str | None = None, address: str | None = None) -> None:
    """Multiply the trace's likelihood by ``exp(log_weight)`` (soft constraints, ABC kernels)."""
    handlers = _state.handlers
    if not handlers:
        return
    base = address if address is not None else call_site_address(1)
    handlers[-1].factor(base, float(log_weight), name)


def run_with_handler(handler: Handler, fn: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Run a Python simulator function with ``handler`` answering its messages."""
    return _enter_simulator(handler, fn, args, kwargs or {})


def seed_forward(seed: int | None) -> None:
    """Seed the generator used by forward runs outside any engine (this thread only)."""
    # numpy is imported here, not at the top: the address scheme below must be checkable on
    # any Python interpreter, even one without numpy (see tests/test_addresses.py).
    import numpy as np

    _state.forward_rng = np.random.default_rng(seed)
