"""Small HDF5 helpers shared by posteriors and trace datasets.

Strings and metadata are stored as UTF-8 bytes in plain uint8 datasets (flat bytes plus offsets
for lists), never as HDF5 variable-length types or pickles, so any HDF5 reader can decode them.
Files are written under a temporary name and renamed when complete, so a killed writer never
leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from ..errors import EtalumisError


def encode_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as (flat uint8 bytes, int64 offsets of length n+1)."""
    encoded = [s.encode() for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def decode_strings(flat: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = flat.tobytes()
    return [data[a:b].decode() for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def write_strings(group: h5py.Group, name: str, strings: Sequence[str]) -> None:
    flat, offsets = encode_strings(strings)
    group.create_dataset(f"{name}_bytes", data=flat, compression="gzip" if flat.size > 4096 else None)
    group.create_dataset(f"{name}_offsets", data=offsets)


def read_strings(group: h5py.Group, name: str) -> list[str]:
    return decode_strings(group[f"{name}_bytes"][()], group[f"{name}_offsets"][()])


def write_json(group: h5py.Group, name: str, obj: Any) -> None:
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    group.create_dataset(name, data=data)


def read_json(group: h5py.Group, name: str) -> Any:
    return json.loads(group[name][()].tobytes().decode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; on success rename it to ``path`` (atomic on one
    file system), on failure remove it. Readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open ``path`` for writing under a temporary name; rename into place on success."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, expected_format: str) -> Iterator[h5py.File]:
    """Open an etalumis HDF5 file for reading, with a clear error when it is something else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise EtalumisError(f"{path} is not a readable HDF5 file ({error})") from None
    with f:
        found = f.attrs.get("format")
        if isinstance(found, bytes):
            found = found.decode()
        if found != expected_format:
            raise EtalumisError(f"{path} is not an {expected_format} file (format: {found!r})")
        yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
