"""The PPX codec: round trips, agreement with flatc's bindings, and rejection of bad buffers."""

from __future__ import annotations

import math
import struct

import flatbuffers
import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.errors import ProtocolError
from etalumis_core.ppx import wire
from etalumis_core.ppx.ppx import Message as GMessage
from etalumis_core.ppx.ppx import MessageBody as GBody
from etalumis_core.ppx.ppx import Normal as GNormal
from etalumis_core.ppx.ppx import Sample as GSample
from etalumis_core.ppx.ppx import SampleResult as GSampleResult
from etalumis_core.ppx.ppx import Tensor as GTensor

DISTRIBUTIONS = [
    et.Normal(1.0, 2.0), et.Normal(np.zeros(3), np.ones(3)), et.Uniform(-1.0, 1.0),
    et.Categorical(np.array([0.2, 0.3, 0.5])), et.Poisson(2.5), et.Bernoulli(0.25),
    et.Beta(2.0, 3.0), et.Exponential(1.5), et.Gamma(2.0, 3.0), et.LogNormal(0.0, 1.0),
    et.Binomial(10.0, 0.4), et.Weibull(1.0, 2.0),
    et.Categorical(np.array([[0.5, 0.5], [0.1, 0.9]])), et.Poisson(np.array([[1.0, 2.0]])),
]

MESSAGES = [
    wire.Handshake("etalumis"), wire.HandshakeResult("etalumis", "gaussian ü"), wire.Run(),
    wire.RunResult(1.5), wire.RunResult(np.arange(6.0).reshape(2, 3)), wire.RunResult(None),
    *[wire.Sample("model+3/f+1", "x", d, control) for d in DISTRIBUTIONS for control in (True, False)],
    wire.Sample("a" * 5000, None, et.Normal(0.0, 1.0)),
    wire.SampleResult(2.0), wire.SampleResult(np.ones((2, 1, 3))),
    *[wire.Observe("model+4", "obs", d, None) for d in DISTRIBUTIONS],
    wire.Observe("model+4", None, et.Normal(np.zeros(2), 1.0), np.array([1.0, -1.0])),
    wire.ObserveResult(), wire.Tag("t+1", "total", 3.0), wire.Tag("t+1", "m", np.eye(2)),
    wire.TagResult(), wire.Reset(),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_and_alignment(msg: wire.Message) -> None:
    buf = wire.encode(msg)
    assert len(buf) % 8 == 0
    assert wire.decode(buf) == msg


def _doubles_aligned(buf: bytes, value: float) -> None:
    i = buf.index(struct.pack("<d", value))
    assert i % 8 == 0, "doubles must be 8-aligned for the C++ verifier"


def test_doubles_are_aligned() -> None:
    _doubles_aligned(wire.encode(wire.SampleResult(1.2345)), 1.2345)
    _doubles_aligned(wire.encode(wire.Sample("abc", "n", et.Normal(3.25, 1.0))), 3.25)


def test_scalars_use_shape_of_rank_zero_like_pyprob() -> None:
    msg = GMessage.Message.GetRootAs(wire.encode(wire.SampleResult(4.0)), 0)
    body = GSampleResult.SampleResult()
    body.Init(msg.Body().Bytes, msg.Body().Pos)
    assert body.Result().DataAsNumpy().tolist() == [4.0]
    assert body.Result().ShapeLength() == 0


def test_generated_bindings_read_our_buffers() -> None:
    buf = wire.encode(wire.Sample("f+1/g+2", "mu", et.Normal(1.0, 5 ** 0.5), False))
    msg = GMessage.Message.GetRootAs(buf, 0)
    assert msg.BodyType() == GBody.MessageBody.Sample
    s = GSample.Sample()
    s.Init(msg.Body().Bytes, msg.Body().Pos)
    assert (s.Address(), s.Name(), s.DistributionType(), s.Control()) == (b"f+1/g+2", b"mu", 1, False)
    n = GNormal.Normal()
    n.Init(s.Distribution().Bytes, s.Distribution().Pos)
    assert n.Mean().DataAsNumpy().tolist() == [1.0]
    assert n.Stddev().DataAsNumpy().tolist() == [5 ** 0.5]


def _generated_sample(file_identifier: bytes | None, shape: list[int], data: list[float]) -> bytes:
    b = flatbuffers.Builder(256)

    def tensor(values: list[float], dims: list[int]) -> int:
        GTensor.TensorStartDataVector(b, len(values))
        for v in reversed(values):
            b.PrependFloat64(v)
        d = b.EndVector()
        GTensor.TensorStartShapeVector(b, len(dims))
        for s in reversed(dims):
            b.PrependInt32(s)
        sh = b.EndVector()
        GTensor.TensorStart(b)
        GTensor.TensorAddData(b, d)
        GTensor.TensorAddShape(b, sh)
        return GTensor.TensorEnd(b)

    mean, std = tensor(data, shape), tensor([1.0] * len(data), shape)
    GNormal.NormalStart(b)
    GNormal.NormalAddMean(b, mean)
    GNormal.NormalAddStddev(b, std)
    dist = GNormal.NormalEnd(b)
    address, name = b.CreateString("main+1"), b.CreateString("")
    GSample.SampleStart(b)
    GSample.SampleAddAddress(b, address)
    GSample.SampleAddName(b, name)
    GSample.SampleAddDistributionType(b, 1)
    GSample.SampleAddDistribution(b, dist)
    body = GSample.SampleEnd(b)
    GMessage.MessageStart(b)
    GMessage.MessageAddBodyType(b, GBody.MessageBody.Sample)
    GMessage.MessageAddBody(b, body)
    b.Finish(GMessage.MessageEnd(b), file_identifier=file_identifier)
    return bytes(b.Output())


@pytest.mark.parametrize("identifier", [None, b"PPXF"])
def test_we_read_generated_buffers_with_or_without_identifier(identifier: bytes | None) -> None:
    msg = wire.decode(_generated_sample(identifier, [], [0.5]))
    assert isinstance(msg, wire.Sample)
    assert (msg.address, msg.name, msg.control) == ("main+1", None, True)  # control defaults true
    assert isinstance(msg.distribution, et.Normal)
    assert msg.distribution.params()["mean"] == 0.5
    batched = wire.decode(_generated_sample(identifier, [2, 2], [0.0, 1.0, 2.0, 3.0]))
    assert batched.distribution.batch_shape == (2, 2)


def test_tensor_conventions() -> None:
    # shape [] with one value: a scalar; [1]: a one-element array; [] with several: flat.
    assert wire.decode(_generated_sample(None, [], [0.5])).distribution.batch_shape == ()
    assert wire.decode(_generated_sample(None, [1], [0.5])).distribution.batch_shape == (1,)
    assert wire.decode(_generated_sample(None, [], [0.5, 1.0])).distribution.batch_shape == (2,)
    assert wire.decode(wire.encode(wire.SampleResult(np.float32(2.5)))).result == 2.5
    assert wire.decode_value(wire.encode_value(np.arange(3.0))).tolist() == [0.0, 1.0, 2.0]
    assert wire.decode_value(wire.encode_value(np.zeros(0))) is None
    torch = pytest.importorskip("torch")
    assert wire.decode(wire.encode(wire.SampleResult(torch.ones(2, 2)))).result.shape == (2, 2)


def test_encode_sample_result_fast_path_matches_general_encoder() -> None:
    for v in (0.0, -1.5, 3, True, math.pi):
        assert wire.encode_sample_result(v) == wire.encode(wire.SampleResult(v))


@pytest.mark.parametrize("bad, match", [
    (b"", "too short"),
    (b"\x00" * 7, "too short"),
    (wire.encode(wire.SampleResult(1.0))[:-9], "SampleResult"),
    (wire.encode(wire.Sample("abc", "x", et.Normal(0.0, 1.0)))[:40], "Sample"),
])
def test_truncated_buffers(bad: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.decode(bad)


def _patch(buf: bytes, old: bytes, new: bytes) -> bytes:
    assert buf.count(old) >= 1
    return buf.replace(old, new, 1)


def test_unknown_message_type() -> None:
    buf = bytearray(wire.encode(wire.Run()))
    # The body type byte is the only non-zero byte equal to Run's id (3) in the root table.
    root = struct.unpack_from("<I", buf, 0)[0]
    vt = root - struct.unpack_from("<i", buf, root)[0]
    type_field = root + struct.unpack_from("<H", buf, vt + 4)[0]
    assert buf[type_field] == 3
    buf[type_field] = 42
    with pytest.raises(ProtocolError, match="unknown message body type 42"):
        wire.decode(bytes(buf))


def _set_distribution_type(buf: bytes, new: int) -> bytes:
    data = bytearray(buf)
    msg = GMessage.Message.GetRootAs(bytes(data), 0)
    body = GSample.Sample()
    body.Init(msg.Body().Bytes, msg.Body().Pos)
    off = body._tab.Offset(8)
    data[body._tab.Pos + off] = new
    return bytes(data)


def test_unknown_distribution() -> None:
    buf = _set_distribution_type(wire.encode(wire.Sample("a", "b", et.Normal(0.0, 1.0))), 99)
    with pytest.raises(ProtocolError, match=r"Sample.*unknown distribution type 99"):
        wire.decode(buf)


def test_wrong_distribution_table_reports_missing_parameter() -> None:
    # Categorical has one field, so a Normal table read as Beta (2 fields) works, but read as a
    # distribution whose parameters are invalid it must fail cleanly.
    buf = _set_distribution_type(wire.encode(wire.Sample("a", "b", et.Normal(-1.0, 1.0))), 6)
    with pytest.raises(ProtocolError, match="Sample.*Beta"):
        wire.decode(buf)


def test_nan_parameter() -> None:
    buf = _patch(wire.encode(wire.Sample("a", "b", et.Normal(0.25, 1.0))),
                 struct.pack("<d", 0.25), struct.pack("<d", math.nan))
    with pytest.raises(ProtocolError, match=r"Sample.*Normal.*non-finite parameter mean"):
        wire.decode(buf)


def test_shape_mismatch() -> None:
    buf = _generated_sample(None, [3], [0.5, 1.0])
    with pytest.raises(ProtocolError, match=r"Sample.*shape \[3\].*2 data values"):
        wire.decode(buf)
    buf = _generated_sample(None, [-2, -1], [0.5, 1.0])
    with pytest.raises(ProtocolError, match="negative dimension"):
        wire.decode(buf)


def test_missing_parameter_and_invalid_parameter() -> None:
    buf = _patch(wire.encode(wire.Observe("a", "b", et.Normal(0.0, 1.0), None)),
                 struct.pack("<d", 1.0), struct.pack("<d", -1.0))
    with pytest.raises(ProtocolError, match=r"Observe.*invalid Normal parameters"):
        wire.decode(buf)


def test_invalid_utf8() -> None:
    buf = _patch(wire.encode(wire.Tag("abcdef", "n", 1.0)), b"abcdef", b"ab\xff\xfeef")
    with pytest.raises(ProtocolError, match=r"Tag.*UTF-8"):
        wire.decode(buf)


def test_distributions_without_ppx_encoding_are_refused() -> None:
    with pytest.raises(ProtocolError, match="TruncatedNormal.*no PPX 1.0.0 encoding"):
        wire.encode(wire.Sample("a", None, et.TruncatedNormal(0.0, 1.0, -1.0, 1.0)))
