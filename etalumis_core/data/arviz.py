"""Export a posterior in the netCDF4 group layout that ArviZ reads (``az.from_netcdf``).

Groups ``posterior`` (every named variable of fixed shape, dimensions ``chain``, ``draw`` and
``<name>_dim_k``) and ``sample_stats``. ArviZ expects equally weighted draws: an importance-
sampling posterior is resampled by weight into one chain (its ESS, not its length, is what the
draws are worth); MCMC chains are kept as chains, cut to the shortest.
"""

from __future__ import annotations

import os

import h5netcdf
import numpy as np

from ..posterior import Posterior
from .hdf5 import atomic_path


def _draw_indices(posterior: Posterior, seed: int) -> np.ndarray:
    """(chain, draw) trace indices."""
    if posterior.metadata.get("mcmc"):
        chains = [np.flatnonzero(posterior.chain == c) for c in range(posterior.num_chains)]
        draws = min(len(c) for c in chains)
        return np.stack([c[:draws] for c in chains])
    rng = np.random.default_rng(seed)
    return posterior.resample_indices(posterior.num_traces, rng)[None, :]


def export_arviz(posterior: Posterior, path: str | os.PathLike, seed: int = 0) -> None:
    indices = _draw_indices(posterior, seed)
    chains, draws = indices.shape
    with atomic_path(path) as tmp, h5netcdf.File(tmp, "w") as f:
        for group_name in ("posterior", "sample_stats"):
            group = f.create_group(group_name)
            group.dimensions = {"chain": chains, "draw": draws}
            group.create_variable("chain", ("chain",), data=np.arange(chains))
            group.create_variable("draw", ("draw",), data=np.arange(draws))
        group = f.groups["posterior"]
        for name, column in posterior.named.items():
            if column.ragged or len(column.index) != posterior.num_traces:
                continue  # ArviZ needs one value per draw: skip variables absent from some traces
            values = np.asarray(column.values)[np.argsort(column.index)][indices]
            dims = [f"{name}_dim_{k}" for k in range(values.ndim - 2)]
            for dim, size in zip(dims, values.shape[2:]):
                group.dimensions[dim] = size
            group.create_variable(name, ("chain", "draw", *dims), data=values)
        stats = f.groups["sample_stats"]
        stats.create_variable("log_weight", ("chain", "draw"),
                              data=posterior.log_weights[indices])
        f.attrs["inference_library"] = "etalumis"
        f.attrs["engine"] = str(posterior.metadata.get("engine", ""))
