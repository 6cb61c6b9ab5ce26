"""Seeds at the bottom of the core: a run's seed, and the generator of each of its work items.

Every engine, dataset and trainer draws the randomness of work item ``index`` from
``chunk_rng(seed, index)`` alone, so results do not depend on how items are spread over workers.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["chunk_rng", "resolve_seed", "split", "num_chunks"]


def chunk_rng(seed: int, *index: int) -> np.random.Generator:
    """The generator of work item ``index`` of a run (one or more non-negative integers, e.g.
    round and item): a function of the run's seed and the index alone."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=index)))


def resolve_seed(seed: int | None) -> int:
    """``None`` draws a fresh seed; it is recorded so the run can be repeated exactly."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2 ** 63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def split(total: int, size: int) -> list[tuple[int, int]]:
    """``(start, count)`` chunks of at most ``size`` covering ``range(total)``."""
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def num_chunks(total: int, size: int) -> int:
    return math.ceil(total / size)
