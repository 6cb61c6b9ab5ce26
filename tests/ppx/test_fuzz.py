"""The decoder under fire: random, truncated and bit-flipped buffers raise ProtocolError only."""

from __future__ import annotations

import random
import time

import numpy as np

import etalumis_core as et
from etalumis_core.errors import ProtocolError
from etalumis_core.ppx import wire

SEEDS = [
    wire.encode(wire.Sample("main+1/loop+2" * 3, "mu", et.Normal(1.0, 2.0))),
    wire.encode(wire.Sample("x", None, et.Categorical(np.array([0.2, 0.8])), False)),
    wire.encode(wire.Sample("y", "b", et.Binomial(np.array([3.0, 4.0]), np.array([0.5, 0.5])))),
    wire.encode(wire.Observe("z", "obs", et.Normal(np.zeros((2, 2)), 1.0), np.ones((2, 2)))),
    wire.encode(wire.Observe("z", "obs", et.Gamma(2.0, 1.0), None)),
    wire.encode(wire.Tag("t", "m", np.eye(3))),
    wire.encode(wire.SampleResult(1.5)),
    wire.encode(wire.RunResult(np.arange(5.0))),
    wire.encode(wire.HandshakeResult("etalumis", "model")),
    wire.encode(wire.Run()),
    wire.encode(wire.Reset()),
]


def _check(buf: bytes) -> bool:
    try:
        wire.decode(buf)
    except ProtocolError:
        return False
    return True


def test_fuzz_decoder() -> None:
    rng = random.Random(20240611)
    start = time.monotonic()
    cases = decoded = 0
    for seed in SEEDS:
        for cut in range(len(seed)):  # every truncation
            decoded += _check(seed[:cut])
            cases += 1
    while cases < 12_000:
        seed = rng.choice(SEEDS)
        kind = rng.random()
        if kind < 0.15:
            buf = rng.randbytes(rng.randrange(0, 200))
        elif kind < 0.75:
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            buf = bytes(data)
        else:  # overwrite a word with an extreme value (offsets, lengths, counts)
            data = bytearray(seed)
            i = rng.randrange(0, len(data) - 4) & ~3
            data[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                                         b"\x04\x00\x00\x00", b"\x00\x00\x00\x00"])
            buf = bytes(data)
        decoded += _check(buf)
        cases += 1
    elapsed = time.monotonic() - start
    assert cases >= 10_000
    assert 0 < decoded < cases  # some flips are harmless, most are caught
    assert elapsed < 20.0
