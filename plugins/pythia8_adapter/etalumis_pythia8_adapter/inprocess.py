"""Pythia 8 tau decays in the engine's own process: the trace of the PPX front end, compiled into
``build/libpythia8_tau.so`` and called through ctypes, its messages answered by Python callbacks
instead of PPX round trips (``simulator=pythia8_tau simulator.params.transport=inprocess``).

Same seed, same trace, bit for bit, as over PPX: the C++ trace is one (``native/tau_trace.h``),
its native-stack addresses keep only frames of the same ``libpythia8.so`` (the Python frames
beneath are not ``Pythia8::``), and they are compacted by the same address dictionary.

Nothing crosses the C boundary but return codes: a callback that raises (the engine broke the
trace off, :class:`~etalumis_core.TraceTooLongError`, ``KeyboardInterrupt``) keeps the exception
and returns 1; the library unwinds out of Pythia with a C++ exception it catches itself, and
:meth:`Pythia8TauInProcess.run` raises the kept exception. Pythia is then ready for the next
trace, as the PPX front end is after a broken-off one.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from etalumis_core import ConfigError, Poisson, SimulatorError, Simulator, Uniform
from etalumis_core.ppx.addresses import CompactingController

from .simulator import CALORIMETER_SHAPE, Pythia8Tau

#: The library ``make pythia8`` builds beside the front end.
LIBRARY_NAME = "libpythia8_tau.so"

_DOUBLES = ctypes.POINTER(ctypes.c_double)
_INTS = ctypes.POINTER(ctypes.c_int32)
_UNIFORM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_double,
                            ctypes.c_double, _DOUBLES)
_TENSOR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, _DOUBLES,
                           ctypes.c_int64, _INTS, ctypes.c_int32)
_RESULT = ctypes.CFUNCTYPE(ctypes.c_int, _DOUBLES, ctypes.c_int64, _INTS, ctypes.c_int32)


class _Callbacks(ctypes.Structure):
    _fields_ = [("uniform", _UNIFORM), ("tag", _TENSOR), ("observe_poisson", _TENSOR),
                ("result", _RESULT)]


_ERROR_SIZE = 4096
_LIBRARIES: dict[str, ctypes.CDLL] = {}


def _load(path: Path) -> ctypes.CDLL:
    """The library, loaded once per process."""
    key = str(path)
    if key not in _LIBRARIES:
        lib = ctypes.CDLL(key)  # CDLL, not PyDLL: Pythia runs without the GIL between callbacks
        lib.pythia8_tau_create.restype = ctypes.c_void_p
        lib.pythia8_tau_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                                           ctypes.c_int, ctypes.c_double, ctypes.c_char_p,
                                           ctypes.c_size_t]
        lib.pythia8_tau_run.restype = ctypes.c_int
        lib.pythia8_tau_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Callbacks),
                                        ctypes.c_char_p, ctypes.c_size_t]
        lib.pythia8_tau_destroy.restype = None
        lib.pythia8_tau_destroy.argtypes = [ctypes.c_void_p]
        _LIBRARIES[key] = lib
    return _LIBRARIES[key]


def _tensor(data: Any, size: int, shape: Any, ndim: int) -> Any:
    """A copy of a C tensor as the PPX decoder gives it: None when empty, a float for one value
    without shape, otherwise a float64 array."""
    if size == 0:
        return None
    if ndim == 0 and size == 1:
        return data[0]
    array = np.ctypeslib.as_array(data, (size,)).copy()
    return array.reshape(tuple(shape[i] for i in range(ndim))) if ndim else array


class _Trace:
    """The callbacks' side of one trace: the compacting controller, and the first exception a
    callback raised (kept, to be raised once the library has unwound out of Pythia)."""

    __slots__ = ("controller", "result", "error")

    def __init__(self, controller: CompactingController) -> None:
        self.controller = controller
        self.result: Any = None
        self.error: BaseException | None = None


class Pythia8TauInProcess(Pythia8Tau, Simulator):
    """:class:`~.simulator.Pythia8TauSimulator`'s traces, with Pythia in this process.

    Parameters are those of :class:`~.simulator.Pythia8TauSimulator` without the PPX ones:
    ``front_end`` names the build directory's front end (the library is its sibling
    ``libpythia8_tau.so``; the front end itself still lists the decay table and runs Pythia
    alone), ``settings``, ``background``, ``address_dictionary``, ``name``. Pythia is built on
    first use, in each process: a pickled simulator (a worker's copy) builds its own.
    """

    def __init__(self, front_end: str | os.PathLike | None = None, settings: Sequence[str] = (),
                 background: float = 1e-4, address_dictionary: str | os.PathLike | None = None,
                 name: str = "pythia8_tau") -> None:
        self._configure(front_end, settings, background, address_dictionary)
        self.library = self.front_end.parent / LIBRARY_NAME
        if not self.library.is_file():
            raise ConfigError(f"the in-process Pythia 8 library {self.library} is not built: run "
                              f"`make pythia8` in the repository root")
        self.name = name
        self.observations = {"calorimeter": CALORIMETER_SHAPE}
        self._native: _Native | None = None

    def run(self, controller: Any) -> Any:
        if self._native is None:
            self._native = _Native(self.library, str(self.xmldoc), self.settings,
                                   self.background)
        compacting = CompactingController(controller, self.compact)
        return self._result(controller, compacting.observed, self._native.run(compacting))

    def close(self) -> None:
        native, self._native = self._native, None
        if native is not None:
            native.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_native"] = None  # a handle into this process's memory: each process builds its own
        return state

    def __repr__(self) -> str:
        return f"Pythia8TauInProcess({str(self.library)!r})"


class _Native:
    """One Pythia in this process, and the C callbacks that feed its trace to a controller."""

    def __init__(self, library: Path, xmldoc: str, settings: Sequence[str],
                 background: float) -> None:
        self._lib = _load(library)
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        encoded = [s.encode() for s in settings]
        array = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        handle = self._lib.pythia8_tau_create(xmldoc.encode(), array, len(encoded),
                                              float(background), error, _ERROR_SIZE)
        if not handle:
            raise ConfigError(f"Pythia 8 could not be set up in process: {error.value.decode()} "
                              f"(settings {list(settings)})")
        self._handle = handle
        self._finalizer = weakref.finalize(self, self._lib.pythia8_tau_destroy, handle)
        self._error = error
        self._trace: _Trace | None = None
        self._addresses: dict[bytes, str] = {}  # decoded once: Pythia repeats a few dozen
        self._uniforms: dict[tuple[float, float], Uniform] = {}
        # Kept referenced: the library holds pointers to these C function wrappers.
        self._callbacks = _Callbacks(_UNIFORM(self._uniform), _TENSOR(self._tag),
                                     _TENSOR(self._observe), _RESULT(self._return))

    def run(self, controller: CompactingController) -> Any:
        trace = self._trace = _Trace(controller)
        try:
            status = self._lib.pythia8_tau_run(self._handle, ctypes.byref(self._callbacks),
                                               self._error, _ERROR_SIZE)
        finally:
            self._trace = None
        if trace.error is not None:
            raise trace.error
        if status != 0:
            raise SimulatorError(f"Pythia 8 (in process) failed during a trace: "
                                 f"{self._error.value.decode() or f'status {status}'}")
        return trace.result

    def _address(self, address: bytes) -> str:
        text = self._addresses.get(address)
        if text is None:
            text = self._addresses[address] = address.decode()
        return text

    # Each callback returns 0 to go on, 1 to break the trace off; it never raises into C.
    def _uniform(self, address: bytes, name: bytes, low: float, high: float, value: Any) -> int:
        trace = self._trace
        try:
            distribution = self._uniforms.get((low, high))
            if distribution is None:
                distribution = self._uniforms[(low, high)] = Uniform(low, high)
            value[0] = float(trace.controller.sample(self._address(address), distribution,
                                                     name.decode() or None, True))
            return 0
        except BaseException as error:  # noqa: BLE001 - kept, raised once out of Pythia
            trace.error = error
            return 1

    def _tag(self, address: bytes, name: bytes, data: Any, size: int, shape: Any, ndim: int) -> int:
        trace = self._trace
        try:
            trace.controller.tag(self._address(address), _tensor(data, size, shape, ndim),
                                 name.decode() or None)
            return 0
        except BaseException as error:  # noqa: BLE001
            trace.error = error
            return 1

    def _observe(self, address: bytes, name: bytes, rates: Any, size: int, shape: Any,
                 ndim: int) -> int:
        trace = self._trace
        try:
            distribution = Poisson(_tensor(rates, size, shape, ndim))
            trace.controller.observe(self._address(address), distribution, None,
                                     name.decode() or None)
            return 0
        except BaseException as error:  # noqa: BLE001
            trace.error = error
            return 1

    def _return(self, data: Any, size: int, shape: Any, ndim: int) -> int:
        trace = self._trace
        try:
            trace.result = _tensor(data, size, shape, ndim)
            return 0
        except BaseException as error:  # noqa: BLE001
            trace.error = error
            return 1

    def close(self) -> None:
        self._finalizer()
