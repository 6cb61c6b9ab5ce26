"""PPX 1.0.0 messages and their flatbuffers encoding, written and read directly.

The schema is ``ppx.fbs`` beside this module; ``ppx/`` holds the bindings ``flatc --python``
generates from it (the regeneration command is at the top of ``ppx.fbs``). The
engine and the simulator side do not use those bindings on their hot path: this module writes
buffers with ``struct`` in one pass and reads them with explicit vtable lookups, which is several
times faster than the generated code (``benchmarks/bench_ppx.py`` measures both) and, unlike the
flatbuffers Python runtime, checks every offset and length before it reads. Any buffer that is
not a well-formed PPX message raises :class:`~etalumis_core.errors.ProtocolError` naming the
message type; nothing a peer sends can make the reader allocate more than the buffer's size or
loop.

Buffers written here are valid flatbuffers (the C++ ``flatbuffers::Verifier`` accepts them: every
scalar is aligned to its size) without the optional file identifier, as existing PPX peers write
them; buffers with or without the identifier are read alike.

Tensors carry values: ``data`` (float64, row-major) and ``shape`` (int32). A scalar is written
with shape ``[]``, as pyprob writes 0-d tensors; an empty ``data`` means "no value" (``None``).
When reading, shape ``[]`` with one element is a scalar (``float``), shape ``[]`` with several is
a flat vector (pyprob's reading), and otherwise the shape must match the data length.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from ..distributions import PPX_TYPES, TYPES
from ..errors import ProtocolError

__all__ = [
    "Message", "Handshake", "HandshakeResult", "Run", "RunResult", "Sample", "SampleResult",
    "Observe", "ObserveResult", "Tag", "TagResult", "Reset", "encode", "decode",
    "encode_sample_result", "encode_value", "decode_value", "distribution_types",
    "MESSAGE_TYPES", "DISTRIBUTION_TYPES",
]

# -- message types -----------------------------------------------------------------------------


class Message:
    """Base of the PPX message classes; ``type_id`` is the ``MessageBody`` union id."""

    __slots__ = ()
    type_id = 0

    def _fields(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(a, b) for a, b in zip(self._fields(), other._fields()))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        inner = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"{type(self).__name__}({inner})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if hasattr(a, "params") and hasattr(b, "params"):
        pa, pb = a.params(), b.params()
        return type(a) is type(b) and pa.keys() == pb.keys() and all(
            np.array_equal(pa[k], pb[k]) for k in pa)
    return a == b


class Handshake(Message):
    __slots__ = ("system_name",)
    type_id = 1

    def __init__(self, system_name: str = "") -> None:
        self.system_name = system_name


class HandshakeResult(Message):
    __slots__ = ("system_name", "model_name")
    type_id = 2

    def __init__(self, system_name: str = "", model_name: str = "") -> None:
        self.system_name = system_name
        self.model_name = model_name


class Run(Message):
    __slots__ = ()
    type_id = 3


class RunResult(Message):
    __slots__ = ("result",)
    type_id = 4

    def __init__(self, result: Any = None) -> None:
        self.result = result


class Sample(Message):
    """``name`` is ``None`` for no name (sent as the empty string)."""

    __slots__ = ("address", "name", "distribution", "control")
    type_id = 5

    def __init__(self, address: str, name: str | None, distribution: Any,
                 control: bool = True) -> None:
        self.address = address
        self.name = name
        self.distribution = distribution
        self.control = control


class SampleResult(Message):
    __slots__ = ("result",)
    type_id = 6

    def __init__(self, result: Any) -> None:
        self.result = result


class Observe(Message):
    """``value`` ``None`` asks the engine to supply the observed value by ``name``."""

    __slots__ = ("address", "name", "distribution", "value")
    type_id = 7

    def __init__(self, address: str, name: str | None, distribution: Any,
                 value: Any = None) -> None:
        self.address = address
        self.name = name
        self.distribution = distribution
        self.value = value


class ObserveResult(Message):
    __slots__ = ()
    type_id = 8


class Tag(Message):
    __slots__ = ("address", "name", "value")
    type_id = 9

    def __init__(self, address: str, name: str | None, value: Any) -> None:
        self.address = address
        self.name = name
        self.value = value


class TagResult(Message):
    __slots__ = ()
    type_id = 10


class Reset(Message):
    """``reason`` is an etalumis extension: a string in the table's first slot, which PPX 1.0.0
    readers (whose ``Reset`` has no fields) ignore. Empty when there is no reason."""

    __slots__ = ("reason",)
    type_id = 11

    def __init__(self, reason: str = "") -> None:
        self.reason = reason


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.type_id: cls for cls in (Handshake, HandshakeResult, Run, RunResult, Sample, SampleResult,
                                 Observe, ObserveResult, Tag, TagResult, Reset)}

# Union Distribution: id -> (core class name, tensor fields in declaration order), from the core's
# one table of distribution types.
DISTRIBUTION_TYPES: dict[int, tuple[str, tuple[str, ...]]] = {
    t.ppx: (t.name, t.params) for t in sorted(TYPES, key=lambda t: t.ppx) if t.ppx}


def distribution_types() -> dict[int, Any]:
    """PPX distribution id -> core distribution class."""
    return PPX_TYPES


# -- writing -----------------------------------------------------------------------------------
# Buffers are laid out front to back: root offset, then each table preceded by its vtable and
# followed by its children. Every block starts 8-aligned and has a length that is a multiple of
# 8, so offsets computed within a block stay valid and doubles stay aligned wherever it lands.

_pack_d = struct.Struct("<d").pack
_pack_I = struct.Struct("<I").pack
_ZERO = bytes(8)


def _pad8(n: int) -> int:
    return -n & 7


def _tensor_block(data: bytes, count: int, shape: tuple) -> bytes:
    # vtable(8) | table: soffset, data uoffset, shape uoffset (12) | data vector at 20 (its
    # elements at 24, 8-aligned) | shape vector
    k = len(shape)
    head = struct.pack("<HHHHiIII", 8, 12, 4, 8, 8, 8, 8 + 8 * count, count)
    tail = struct.pack(f"<I{k}i", k, *shape)
    size = 24 + 8 * count + 4 + 4 * k
    return head + data + tail + _ZERO[:_pad8(size)]


_EMPTY_TENSOR = _tensor_block(b"", 0, ())
_SCALAR_HEAD = struct.pack("<HHHHiIII", 8, 12, 4, 8, 8, 8, 16, 1)
_SCALAR_TAIL = struct.pack("<I", 0) + bytes(4)


def _value_block(value: Any, what: str) -> bytes:
    """A Tensor block (entry at byte 8) holding ``value``."""
    if value is None:
        return _EMPTY_TENSOR
    t = type(value)
    if t is float or t is int or t is bool:
        return _SCALAR_HEAD + _pack_d(value) + _SCALAR_TAIL
    if t is np.ndarray and value.ndim == 0:
        return _SCALAR_HEAD + _pack_d(float(value)) + _SCALAR_TAIL
    if hasattr(value, "detach"):  # torch tensors, without importing torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype="<f8")
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"PPX {what}: cannot encode {type(value).__name__} value {value!r} "
                            f"as a tensor of doubles") from e
    if array.ndim == 0:
        return _SCALAR_HEAD + _pack_d(float(array)) + _SCALAR_TAIL
    if array.size == 0:
        return _EMPTY_TENSOR
    return _tensor_block(np.ascontiguousarray(array).tobytes(), array.size, array.shape)


def _string_block(s: str | None) -> bytes:
    raw = (s or "").encode("utf-8")
    size = 4 + len(raw) + 1
    return _pack_I(len(raw)) + raw + _ZERO[:1 + _pad8(size)]


class _Layout:
    """How one kind of table is written: offset fields in ``ref_slots``, one-byte fields in
    ``byte_slots``. The vtable and the soffset are fixed, so they are packed once."""

    __slots__ = ("head", "first_field", "child0", "pack_inline", "entry")

    def __init__(self, nslots: int, ref_slots: tuple[int, ...], byte_slots: tuple[int, ...] = ()) -> None:
        vt_size = 4 + 2 * nslots
        vt_len = vt_size + (-vt_size & 3)
        inline = 4 + 4 * len(ref_slots) + len(byte_slots)
        slots = [0] * nslots
        pos = 4
        for slot in ref_slots:
            slots[slot] = pos
            pos += 4
        for slot in byte_slots:
            slots[slot] = pos
            pos += 1
        self.head = (struct.pack(f"<HH{nslots}H", vt_size, inline, *slots)
                     + bytes(vt_len - vt_size) + struct.pack("<i", vt_len))
        self.entry = vt_len
        self.first_field = vt_len + 4
        end = vt_len + inline
        self.child0 = end + _pad8(end)
        self.pack_inline = struct.Struct(
            f"<{len(ref_slots)}I{len(byte_slots)}B{_pad8(end)}x").pack

    def block(self, children: tuple[tuple[bytes, int], ...], *byte_values: int) -> bytes:
        """The table followed by its children (block, entry), in ``ref_slots`` order."""
        offsets = []
        child = self.child0
        field = self.first_field
        for block, entry in children:
            offsets.append(child + entry - field)
            field += 4
            child += len(block)
        return b"".join((self.head, self.pack_inline(*offsets, *byte_values),
                         *[block for block, _ in children]))


_MESSAGE = _Layout(2, (1,), (0,))
_SAMPLE = _Layout(5, (0, 1, 3), (2,))
_SAMPLE_UNCONTROLLED = _Layout(5, (0, 1, 3), (2, 4))
_OBSERVE = _Layout(5, (0, 1, 3, 4), (2,))
_TAG = _Layout(3, (0, 1, 2))
_ONE_REF = _Layout(1, (0,))
_TWO_REFS = _Layout(2, (0, 1))
_EMPTY = _Layout(0, ())
_DIST_LAYOUTS = {1: _ONE_REF, 2: _TWO_REFS}


def _distribution_block(distribution: Any, what: str) -> tuple[int, tuple[bytes, int]]:
    type_id = getattr(distribution, "ppx_type", 0)
    if type_id not in DISTRIBUTION_TYPES:
        raise ProtocolError(
            f"PPX {what}: distribution {getattr(distribution, 'name', distribution)!r} has no "
            f"PPX 1.0.0 encoding (PPX carries only "
            f"{', '.join(n for n, _ in DISTRIBUTION_TYPES.values())})")
    fields = DISTRIBUTION_TYPES[type_id][1]
    params = distribution.params()
    layout = _DIST_LAYOUTS[len(fields)]
    block = layout.block(tuple((_value_block(params[f], what), 8) for f in fields))
    return type_id, (block, layout.entry)


def _body_block(msg: Message) -> tuple[bytes, int]:
    t = type(msg)
    what = t.__name__
    if t is Sample:
        dtype, dist = _distribution_block(msg.distribution, what)
        children = ((_string_block(msg.address), 0), (_string_block(msg.name), 0), dist)
        if msg.control:
            return _SAMPLE.block(children, dtype), _SAMPLE.entry
        return _SAMPLE_UNCONTROLLED.block(children, dtype, 0), _SAMPLE.entry
    if t is Observe:
        dtype, dist = _distribution_block(msg.distribution, what)
        children = ((_string_block(msg.address), 0), (_string_block(msg.name), 0), dist,
                    (_value_block(msg.value, what), 8))
        return _OBSERVE.block(children, dtype), _OBSERVE.entry
    if t is SampleResult or t is RunResult:
        return _ONE_REF.block(((_value_block(msg.result, what), 8),)), _ONE_REF.entry
    if t is Tag:
        children = ((_string_block(msg.address), 0), (_string_block(msg.name), 0),
                    (_value_block(msg.value, what), 8))
        return _TAG.block(children), _TAG.entry
    if t is Handshake:
        return _ONE_REF.block(((_string_block(msg.system_name), 0),)), _ONE_REF.entry
    if t is HandshakeResult:
        children = ((_string_block(msg.system_name), 0), (_string_block(msg.model_name), 0))
        return _TWO_REFS.block(children), _TWO_REFS.entry
    if t is Reset and msg.reason:
        return _ONE_REF.block(((_string_block(msg.reason), 0),)), _ONE_REF.entry
    if t in (Run, ObserveResult, TagResult, Reset):
        return _EMPTY.block(()), _EMPTY.entry
    raise TypeError(f"not a PPX message: {msg!r}")


_ROOT_PREFIX = _pack_I(8 + _MESSAGE.entry) + bytes(4)


def encode(msg: Message) -> bytes:
    """The flatbuffer of one PPX message (no file identifier, as existing peers write it)."""
    return _ROOT_PREFIX + _MESSAGE.block((_body_block(msg),), msg.type_id)


def _template(msg: Message, sentinel: float) -> tuple[bytes, bytes]:
    buf = encode(msg)
    i = buf.index(_pack_d(sentinel))
    return buf[:i], buf[i + 8:]


_SENTINEL = 1.2345678901234567e-301
_SR_PREFIX, _SR_SUFFIX = _template(SampleResult(_SENTINEL), _SENTINEL)


def encode_sample_result(value: Any) -> bytes:
    """``encode(SampleResult(value))``, with a fast path for the common scalar case."""
    t = type(value)
    if t is float or t is int or t is bool:
        return _SR_PREFIX + _pack_d(value) + _SR_SUFFIX
    return encode(SampleResult(value))


RUN = encode(Run())
OBSERVE_RESULT = encode(ObserveResult())
TAG_RESULT = encode(TagResult())
RESET = encode(Reset())


def encode_value(value: Any) -> bytes:
    """A standalone Tensor flatbuffer (root Tensor), e.g. for tests and tooling."""
    block = _value_block(value, "Tensor")
    return _pack_I(8 + 8) + bytes(4) + block


# -- reading -----------------------------------------------------------------------------------

_u32 = struct.Struct("<I").unpack_from
_i32 = struct.Struct("<i").unpack_from
_f64 = struct.Struct("<d").unpack_from
_vt_fields = [struct.Struct(f"<{k}H").unpack_from for k in range(0, 8)]
_HH = struct.Struct("<HH").unpack_from
_HHHH = struct.Struct("<HHHH").unpack_from
_NO_FIELDS = [(0,) * k for k in range(0, 8)]


class _Malformed(Exception):
    """Internal: raised by the readers, turned into ProtocolError naming the message type."""


def _table(buf: bytes, n: int, pos: int, nslots: int) -> tuple[int, list[int]]:
    """Absolute field positions (0 where absent) of the table at ``pos``, and the table end."""
    if pos < 4 or pos + 4 > n:
        raise _Malformed(f"table at byte {pos} lies outside the {n}-byte buffer")
    vt = pos - _i32(buf, pos)[0]
    if vt < 0 or vt + 4 > n:
        raise _Malformed(f"vtable at byte {vt} of the table at byte {pos} lies outside the buffer")
    vt_size, tsize = _HH(buf, vt)
    if vt_size < 4 or vt_size & 1 or vt + vt_size > n or tsize < 4 or pos + tsize > n:
        raise _Malformed(f"table at byte {pos} has an invalid vtable (sizes {vt_size}, {tsize})")
    present = (vt_size - 4) >> 1
    if present >= nslots:
        offs = _vt_fields[nslots](buf, vt + 4)
    else:
        offs = _vt_fields[present](buf, vt + 4) + _NO_FIELDS[nslots - present]
    out = []
    for o in offs:
        if o:
            if o < 4 or o >= tsize:
                raise _Malformed(f"a field of the table at byte {pos} lies outside the table")
            out.append(pos + o)
        else:
            out.append(0)
    return pos + tsize, out


def _ref(buf: bytes, n: int, field: int, end: int) -> int:
    if field + 4 > end:
        raise _Malformed(f"offset field at byte {field} overruns its table")
    target = field + _u32(buf, field)[0]
    if target + 4 > n:
        raise _Malformed(f"offset at byte {field} points outside the {n}-byte buffer")
    return target


def _string(buf: bytes, n: int, field: int, end: int, what: str) -> str:
    if not field:
        return ""
    target = _ref(buf, n, field, end)
    length = _u32(buf, target)[0]
    start = target + 4
    if start + length > n:
        raise _Malformed(f"string {what!r} of {length} bytes overruns the {n}-byte buffer")
    try:
        return buf[start:start + length].decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Malformed(f"string {what!r} is not UTF-8 ({e.reason})") from None


def _u8(buf: bytes, field: int, end: int, default: int) -> int:
    if not field:
        return default
    if field >= end:
        raise _Malformed(f"byte field at {field} overruns its table")
    return buf[field]


def _tensor(buf: bytes, n: int, field: int, end: int, what: str) -> Any:
    """The value a Tensor field holds: None (absent or empty), a float (shape [] and one
    element) or a float64 array."""
    if not field:
        return None
    return _tensor_at(buf, n, _ref(buf, n, field, end), what)


def _tensor_at(buf: bytes, n: int, pos: int, what: str) -> Any:
    # Fast path (the hot path of every Sample): a full vtable, read in one unpack, with the
    # same checks _table makes; anything unusual takes the general path.
    fdata = fshape = -1
    if 4 <= pos and pos + 4 <= n:
        vt = pos - _i32(buf, pos)[0]
        if 0 <= vt and vt + 8 <= n:
            vt_size, tsize, od, osh = _HHHH(buf, vt)
            if (vt_size >= 8 and not vt_size & 1 and vt + vt_size <= n and tsize >= 4
                    and pos + tsize <= n and (not od or 4 <= od <= tsize - 4)
                    and (not osh or 4 <= osh <= tsize - 4)):
                fdata = pos + od if od else 0
                fshape = pos + osh if osh else 0
                tend = pos + tsize
    if fdata < 0:
        tend, (fdata, fshape) = _table(buf, n, pos, 2)
        if fdata + 4 > tend or fshape + 4 > tend:
            raise _Malformed(f"tensor {what!r}: a field overruns its table")
    if not fdata:
        return None
    vec = fdata + _u32(buf, fdata)[0]
    if vec + 4 > n:
        raise _Malformed(f"tensor {what!r}: data offset points outside the {n}-byte buffer")
    count = _u32(buf, vec)[0]
    if count == 0:
        return None
    start = vec + 4
    if start + 8 * count > n:
        raise _Malformed(f"tensor {what!r} has {count} doubles, more than the buffer holds")
    k = 0
    if fshape:
        svec = _ref(buf, n, fshape, tend)
        k = _u32(buf, svec)[0]
        if svec + 4 + 4 * k > n:
            raise _Malformed(f"tensor {what!r} has a shape of {k} dimensions, more than the "
                             "buffer holds")
    if k == 0:
        if count == 1:
            return _f64(buf, start)[0]
        return np.frombuffer(buf, "<f8", count, start).astype(np.float64)
    shape = struct.unpack_from(f"<{k}i", buf, svec + 4)
    size = 1
    for d in shape:
        if d < 0:
            raise _Malformed(f"tensor {what!r} has negative dimension in shape {list(shape)}")
        size *= d
    if size != count:
        raise _Malformed(f"tensor {what!r} has shape {list(shape)} ({size} elements) but "
                         f"{count} data values")
    return np.frombuffer(buf, "<f8", count, start).reshape(shape).astype(np.float64)


def _distribution(buf: bytes, n: int, tfield: int, field: int, end: int) -> Any:
    type_id = _u8(buf, tfield, end, 0)
    if type_id == 0 or not field:
        if type_id == 0 and not field:
            raise _Malformed("it has no distribution")
        raise _Malformed(f"distribution union type {type_id} without its table"
                         if type_id else "distribution table without its union type")
    spec = DISTRIBUTION_TYPES.get(type_id)
    if spec is None:
        raise _Malformed(f"unknown distribution type {type_id} (PPX 1.0.0 knows 1..11)")
    name, fields = spec
    dend, positions = _table(buf, n, _ref(buf, n, field, end), len(fields))
    params = {}
    for f, pos in zip(fields, positions):
        value = _tensor(buf, n, pos, dend, f"{name}.{f}")
        if value is None:
            raise _Malformed(f"{name} distribution lacks its parameter {f!r}")
        finite = math.isfinite(value) if type(value) is float else bool(np.isfinite(value).all())
        if not finite:
            raise _Malformed(f"{name} distribution has a non-finite parameter {f}={value!r}")
        params[f] = value
    cls = PPX_TYPES[type_id]
    try:
        return cls.from_params(**params)
    except Exception as e:  # the distribution's own validation: report it as the peer's fault
        raise _Malformed(f"invalid {name} parameters {params!r}: {e}") from None


def _decode_body(buf: bytes, n: int, type_id: int, pos: int) -> Message:
    if type_id == 5:  # Sample
        end, (fa, fn, ft, fd, fc) = _table(buf, n, pos, 5)
        return Sample(_string(buf, n, fa, end, "address"), _string(buf, n, fn, end, "name") or None,
                      _distribution(buf, n, ft, fd, end), bool(_u8(buf, fc, end, 1)))
    if type_id == 7:  # Observe
        end, (fa, fn, ft, fd, fv) = _table(buf, n, pos, 5)
        return Observe(_string(buf, n, fa, end, "address"),
                       _string(buf, n, fn, end, "name") or None,
                       _distribution(buf, n, ft, fd, end), _tensor(buf, n, fv, end, "value"))
    if type_id == 6 or type_id == 4:  # SampleResult, RunResult
        end, (fr,) = _table(buf, n, pos, 1)
        value = _tensor(buf, n, fr, end, "result")
        return SampleResult(value) if type_id == 6 else RunResult(value)
    if type_id == 9:  # Tag
        end, (fa, fn, fv) = _table(buf, n, pos, 3)
        return Tag(_string(buf, n, fa, end, "address"), _string(buf, n, fn, end, "name") or None,
                   _tensor(buf, n, fv, end, "value"))
    if type_id == 1:
        end, (fs,) = _table(buf, n, pos, 1)
        return Handshake(_string(buf, n, fs, end, "system_name"))
    if type_id == 2:
        end, (fs, fm) = _table(buf, n, pos, 2)
        return HandshakeResult(_string(buf, n, fs, end, "system_name"),
                               _string(buf, n, fm, end, "model_name"))
    if type_id == 11 and pos:
        end, (fr,) = _table(buf, n, pos, 1)
        return Reset(_string(buf, n, fr, end, "reason"))
    if pos:  # tables without fields: still check that the table itself is sound
        _table(buf, n, pos, 0)
    return MESSAGE_TYPES[type_id]()


# Simulators send the same Sample message again and again (a loop or a rejection sampler at one
# call site sends identical bytes: the engine, not the simulator, counts instances). Decoded
# Samples are immutable values, so a bounded cache keyed by the raw bytes skips their decoding.
_SAMPLE_CACHE: dict[bytes, Message] = {}
_SAMPLE_CACHE_SIZE = 4096
_SAMPLE_CACHE_MAX_BYTES = 2048


def decode(buf: bytes) -> Message:
    """The PPX message in ``buf``; :class:`ProtocolError` (naming the message type) for anything
    that is not a well-formed PPX 1.0.0 message."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    if n <= _SAMPLE_CACHE_MAX_BYTES:
        hit = _SAMPLE_CACHE.get(buf)
        if hit is not None:
            return hit
        msg = _decode(buf, n)
        if type(msg) is Sample:
            if len(_SAMPLE_CACHE) >= _SAMPLE_CACHE_SIZE:
                _SAMPLE_CACHE.clear()
            _SAMPLE_CACHE[buf] = msg
        return msg
    return _decode(buf, n)


def _decode(buf: bytes, n: int) -> Message:
    if n < 8:
        raise ProtocolError(f"malformed PPX message: {n} bytes is too short for a flatbuffer")
    type_id = 0
    try:
        root = _u32(buf, 0)[0]
        end, (ftype, fbody) = _table(buf, n, root, 2)
        type_id = _u8(buf, ftype, end, 0)
        if type_id not in MESSAGE_TYPES:
            raise ProtocolError(f"malformed PPX message: unknown message body type {type_id} "
                                "(PPX 1.0.0 knows 1..11)")
        pos = _ref(buf, n, fbody, end) if fbody else 0
        if not pos and type_id in (1, 2, 4, 5, 6, 7, 9):
            raise _Malformed("the message has no body")
        return _decode_body(buf, n, type_id, pos)
    except _Malformed as e:
        kind = MESSAGE_TYPES[type_id].__name__ if type_id in MESSAGE_TYPES else "message"
        raise ProtocolError(f"malformed PPX {kind} ({n} bytes): {e}") from None
    except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as e:
        if isinstance(e, ProtocolError):
            raise
        # Defence in depth: every read above is bounds-checked, so this means a reader bug.
        kind = MESSAGE_TYPES[type_id].__name__ if type_id in MESSAGE_TYPES else "message"
        raise ProtocolError(f"malformed PPX {kind} ({n} bytes): {type(e).__name__}: {e}") from e


def decode_value(buf: bytes) -> Any:
    """Read a standalone Tensor flatbuffer written by :func:`encode_value`."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    if n < 8:
        raise ProtocolError(f"malformed PPX Tensor: {n} bytes is too short")
    try:
        return _tensor_at(buf, n, _u32(buf, 0)[0], "value")
    except _Malformed as e:
        raise ProtocolError(f"malformed PPX Tensor ({n} bytes): {e}") from None
