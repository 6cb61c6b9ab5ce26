"""Where a π⁰'s photons go: its decay angles drawn where the calorimeter holds deposits that
the rest of the trace does not explain.

A jump that adds or rebuilds a π⁰ (the split and merge of :mod:`.splits`) fixes the π⁰'s
momentum but not how its two photons share it. Drawn from their prior, the decay angles put
the photons anywhere in the π⁰'s cone, and under a voxel-sharp likelihood nearly every such
jump is rejected: the search then keeps a π⁰ too few or too many. The placer scores a grid of
decay angles by the log-likelihood the photons add to the rest of the trace, on the deposit
counts summed over depth (independent Poissons still: a coarser likelihood of the same counts,
cheap enough for a jump), draws a cell by its score, with a share of the draws spread
uniformly so that every angle stays possible, then a finer cell inside it the same way, and
a point uniformly inside that. The density is a step function that the jump evaluates the
same way in both directions; how well the coarse score matches the likelihood changes how
often jumps are accepted, never the posterior they keep.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .calorimeter import Calorimeter
from .decay import boost
from .physics import PHOTON, PI0, mass

PI0_MASS = float(mass(PI0))
# The grid of decay angles, cos θ by φ, and within the cell drawn a finer grid of as many
# cells again per side; at each level a share of the draws is spread uniformly.
CELLS, FINE = 16, 8
UNIFORM_SHARE = 0.1
_WIDTHS = np.array([2.0 / CELLS, 2.0 * math.pi / CELLS])
_LOG_SPHERE = math.log(4.0 * math.pi)


def photons(pi0: np.ndarray, cos_theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """The two photons (lab four-momenta, (n, 2, 4)) of a π⁰ ``pi0`` for n decay angles, as
    :func:`decay.two_body_decay` makes them."""
    cos_theta, phi = np.atleast_1d(cos_theta), np.atleast_1d(phi)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta * cos_theta, 0.0, None))
    half = 0.5 * PI0_MASS
    n = half * np.column_stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta])
    rest = np.empty((len(n), 2, 4))
    rest[:, :, 0] = half
    rest[:, 0, 1:], rest[:, 1, 1:] = n, -n
    return boost(rest.reshape(-1, 4), pi0, PI0_MASS).reshape(-1, 2, 4)


class PhotonPlacer:
    """Draws a π⁰'s decay angles where the observed counts (summed over depth) exceed what
    the rest of the trace explains, and gives the draw's log density."""

    def __init__(self, calorimeter: Calorimeter, background: float) -> None:
        self.calorimeter = calorimeter
        self.background = float(background)

    def project(self, counts: np.ndarray) -> np.ndarray:
        """Observed deposit counts, summed over depth."""
        return np.asarray(counts, dtype=float).sum(axis=2)

    def rest(self, hadrons: Iterable[tuple[int, np.ndarray]],
             pi0s: Iterable[tuple[np.ndarray, tuple[float, float]]]) -> np.ndarray:
        """The expected counts (summed over depth) of the trace's other particles: ``hadrons``
        as (PDG id, four-momentum), π⁰ as (four-momentum, decay angles), and the background."""
        total = np.full(self.calorimeter.bins[:2],
                        self.calorimeter.bins[2] * self.background)
        for pdg, p4 in hadrons:
            total += self.calorimeter.expected_map(p4, pdg)[0]
        for p4, angles in pi0s:
            total += self.shower(p4, angles)
        return total

    def shower(self, pi0: np.ndarray, angles: tuple[float, float]) -> np.ndarray:
        """The expected counts (summed over depth) of a π⁰'s photons."""
        return self.calorimeter.expected_map(photons(pi0, *angles)[0], PHOTON).sum(axis=0)

    def _probs(self, pi0: np.ndarray, rest: np.ndarray, observed: np.ndarray,
               corner: np.ndarray, width: np.ndarray, n: int) -> np.ndarray:
        """The probabilities of the n × n cells of ``width`` from ``corner`` (cos θ, φ): each
        centre's photons scored by the log-likelihood they add, mixed with the uniform
        share."""
        steps = (np.arange(n) + 0.5)
        cos_theta, phi = np.meshgrid(corner[0] + steps * width[0], corner[1] + steps * width[1],
                                     indexing="ij")
        pairs = photons(pi0, cos_theta.ravel(), phi.ravel())
        added = self.calorimeter.expected_map(pairs.reshape(-1, 4), PHOTON)
        added = added.reshape(len(pairs), 2, *rest.shape).sum(axis=1)
        score = (observed * np.log1p(added / rest)).sum(axis=(1, 2)) - added.sum(axis=(1, 2))
        probs = np.exp(score - score.max())
        return (1.0 - UNIFORM_SHARE) * probs / probs.sum() + UNIFORM_SHARE / len(probs)

    def _levels(self, pi0: np.ndarray, rest: np.ndarray, observed: np.ndarray,
                rng: np.random.Generator | None = None,
                angles: tuple[float, float] | None = None) -> tuple[tuple[float, float], float]:
        """A coarse cell, then a fine cell inside it, each drawn by ``rng`` or read from
        ``angles``, then a point in the fine cell: the point and its log density."""
        corner, width, log_q = np.array([-1.0, 0.0]), _WIDTHS, 0.0
        for n in (CELLS, FINE):
            probs = self._probs(pi0, rest, observed, corner, width, n)
            if angles is None:
                index = int(rng.choice(len(probs), p=probs))
            else:
                at = np.array([angles[0], angles[1] % (2.0 * math.pi)])
                i, j = np.clip(((at - corner) / width).astype(int), 0, n - 1)
                index = int(i) * n + int(j)
            log_q += math.log(probs[index])
            corner = corner + np.array(divmod(index, n)) * width
            width = width / FINE
        width = width * FINE
        point = ((corner + rng.random(2) * width) if angles is None else angles)
        return ((float(point[0]), float(point[1])),
                log_q - math.log(width[0] * width[1]))

    def draw(self, pi0: np.ndarray, rest: np.ndarray, observed: np.ndarray | None,
             rng: np.random.Generator) -> tuple[tuple[float, float], float]:
        """Decay angles (cos θ, φ) for the π⁰ ``pi0`` (lab four-momentum), from their prior
        where nothing is observed, and their log density."""
        if observed is None:
            return ((float(rng.uniform(-1.0, 1.0)), float(rng.uniform(0.0, 2.0 * math.pi))),
                    -_LOG_SPHERE)
        return self._levels(pi0, rest, observed, rng=rng)

    def log_density(self, angles: tuple[float, float], pi0: np.ndarray, rest: np.ndarray,
                    observed: np.ndarray | None) -> float:
        """log density of :meth:`draw` at ``angles`` (against d cos θ dφ)."""
        if observed is None:
            return -_LOG_SPHERE
        return self._levels(pi0, rest, observed, angles=tuple(angles))[1]


__all__ = ["PhotonPlacer", "photons"]
