"""PPX 1.0.0: drive simulators in any language, and serve etalumis simulators to any PPX engine.

* :mod:`~etalumis_core.ppx.wire` -- the messages and their flatbuffers codec (schema:
  ``ppx.fbs``; flatc-generated reference bindings in ``etalumis_core.ppx.ppx``).
* :class:`PPXSimulator` -- the engine side: a simulator process behind a ZeroMQ REQ socket, as an
  etalumis :class:`~etalumis_core.simulator.Simulator` that never hangs and restarts on failure.
* :func:`serve` -- the simulator side: any etalumis simulator behind a ZeroMQ REP socket.
* :class:`AddressDictionary` -- compact, stable addresses for the long call-stack addresses of
  native simulators (:mod:`~etalumis_core.ppx.addresses`).
"""

from .addresses import AddressDictionary, make_alias, split_frames
from .engine import PPXSimulator, free_ipc_address, free_tcp_address
from .server import DEFAULT_ADDRESS, serve
from .wire import (DISTRIBUTION_TYPES, MESSAGE_TYPES, Handshake, HandshakeResult, Message,
                   Observe, ObserveResult, Reset, Run, RunResult, Sample, SampleResult, Tag,
                   TagResult, decode, decode_value, encode, encode_sample_result, encode_value)

__all__ = [
    "PPXSimulator", "serve", "DEFAULT_ADDRESS", "free_ipc_address", "free_tcp_address",
    "encode", "decode", "encode_value", "decode_value", "encode_sample_result",
    "Message", "Handshake", "HandshakeResult", "Run", "RunResult", "Sample", "SampleResult",
    "Observe", "ObserveResult", "Tag", "TagResult", "Reset", "MESSAGE_TYPES",
    "DISTRIBUTION_TYPES", "AddressDictionary", "make_alias", "split_frames",
]
