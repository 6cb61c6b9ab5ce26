"""A posterior as ArviZ sees it: an ``arviz.InferenceData``, optionally written as netCDF.

Groups: ``posterior`` (every named latent of fixed shape that every trace has, dimensions
``chain``, ``draw`` and ``<name>_dim_k``), ``sample_stats`` (each draw's ``log_weight``),
``log_likelihood`` (``total``: each draw's log p(y | x), where the
posterior kept it) and ``observed_data`` (the observations the engine recorded, or those
passed in).

ArviZ assumes its draws are equally weighted, and measures their worth by their
autocorrelation. MCMC chains are exported as chains (cut to the shortest), so ArviZ's own ESS
and R-hat apply. A posterior whose draws are weighted (importance sampling, IC) or correlated
through a genealogy (SMC) is exported as one chain of M ≈ ``posterior.ess`` draws, chosen by
systematic resampling of the weights and put in random order: ArviZ then sees about M
independent draws and claims no more than the engine's honest ESS (at least 4 draws, which
ArviZ's diagnostics need).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .hdf5 import atomic_path

if TYPE_CHECKING:
    from ..posterior import Posterior

MIN_DRAWS = 4


def import_arviz() -> Any:
    with warnings.catch_warnings():   # ArviZ announces its coming refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def draw_indices(posterior: "Posterior", seed: int = 0) -> np.ndarray:
    """The (chain, draw) trace indices that are exported (see the module docstring)."""
    if posterior.metadata.get("mcmc"):
        chains = [np.flatnonzero(posterior.chain == c) for c in range(posterior.num_chains)]
        draws = min(len(c) for c in chains)
        return np.stack([c[:draws] for c in chains])
    rng = np.random.default_rng(seed)
    ess = posterior.ess
    size = posterior.num_traces if not math.isfinite(ess) else int(round(ess))
    size = min(max(size, MIN_DRAWS), posterior.num_traces)
    cdf = np.cumsum(posterior.weights)
    cdf[-1] = 1.0
    chosen = np.searchsorted(cdf, (rng.random() + np.arange(size)) / size)
    return rng.permutation(chosen)[None, :]


def to_inference_data(posterior: "Posterior", path: str | os.PathLike | None = None,
                      seed: int = 0, observations: Mapping[str, Any] | None = None) -> Any:
    """``posterior`` as an ``arviz.InferenceData``; written to ``path`` (netCDF4) when given."""
    az = import_arviz()
    indices = draw_indices(posterior, seed)
    chains, draws = indices.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    latents = {}
    for name, column in posterior.named.items():
        if column.ragged or len(column.index) != posterior.num_traces:
            continue  # ArviZ needs one value per draw: skip variables absent from some traces
        latents[name] = np.asarray(column.values)[np.argsort(column.index)][indices]
    stats = {"log_weight": posterior.log_weights[indices]}
    groups: dict[str, Any] = {"posterior": latents, "sample_stats": stats}
    if posterior.log_likelihood is not None:
        groups["log_likelihood"] = {"total": posterior.log_likelihood[indices]}
    observed = dict(posterior.metadata.get("observations") or {})
    observed.update(observations or {})
    if observed:
        groups["observed_data"] = {k: np.asarray(v, dtype=np.float64) for k, v in observed.items()}
    data = az.from_dict(**groups, coords=coords,
                        attrs={"inference_library": "etalumis",
                               "engine": str(posterior.metadata.get("engine", "")),
                               "ess": float(posterior.ess)})
    if path is not None:
        with atomic_path(path) as tmp:
            data.to_netcdf(str(tmp), engine="h5netcdf")
    return data
