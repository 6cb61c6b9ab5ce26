"""Observation files: the observed values of one event by name, with its ground truth if known.

Written by ``etalumis simulate`` and read by ``etalumis infer observation=PATH``. HDF5 with one
dataset per observed name and the truth (named samples and tags) as JSON bytes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..trace import TAG, Trace, Variable
from .hdf5 import atomic_h5, open_h5, read_json, write_json

FORMAT = "etalumis-observation"


def jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def truth_values(trace: Trace, max_size: int = 4096) -> dict[str, Any]:
    """Named samples and tags of a trace (small enough to keep), JSON-ready."""
    out: dict[str, Any] = {}
    for v in trace.variables:
        if v.name and v.name not in out and v.kind in ("sample", "tag") \
                and np.size(v.value) <= max_size and not isinstance(v.value, (str, dict)):
            out[v.name] = jsonable(v.value)
    return out


def truth_trace(values: dict[str, Any]) -> Trace:
    """A trace standing for known true values (as tags), for reports that compare with truth."""
    variables = [Variable(TAG, f"truth__{name}", name, None,
                          np.asarray(value) if isinstance(value, list) else value, False, 0.0)
                 for name, value in values.items()]
    return Trace(variables, None, 0.0, 0.0, 0.0, ())


def save_observation(path: str | os.PathLike, observations: dict[str, Any],
                     truth: dict[str, Any] | None = None, metadata: dict | None = None) -> None:
    names = list(observations)
    with atomic_h5(path) as f:
        f.attrs["format"] = np.bytes_(FORMAT.encode())
        for i, name in enumerate(names):
            value = np.asarray(observations[name], dtype=np.float64)
            f.create_dataset(f"observations/{i}", data=value,
                             compression="gzip" if value.size > 1 else None)
        write_json(f, "meta", {"names": names, "truth": truth, "metadata": metadata or {}})


def load_observation(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any] | None, dict]:
    """``(observations by name, truth values or None, metadata)``."""
    with open_h5(path, FORMAT) as f:
        meta = read_json(f, "meta")
        observations = {}
        for i, name in enumerate(meta["names"]):
            value = f[f"observations/{i}"][()]
            observations[name] = float(value) if np.ndim(value) == 0 else value
    return observations, meta.get("truth"), meta.get("metadata", {})
