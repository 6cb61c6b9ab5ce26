"""A fast voxel calorimeter: Gaussian showers binned into a 35 x 35 x 20 grid.

This follows the approximate calorimeter used with Sherpa in earlier probabilistic-programming
work (see the README for the reading of its shape parameters). Each visible final-state particle
showers electromagnetically (e±, γ) or hadronically (hadrons); muons and neutrinos deposit
nothing. A particle of energy E leaves Poisson(E f / q) deposits of q = 5 MeV each, spread as a
3-D Gaussian around a shower centre on the particle's line of flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import special

from . import physics
from .decay import Particle, Sampler


@dataclass(frozen=True)
class ShowerType:
    """Sampling fraction and shape parameters (x, y, z) of one kind of shower."""

    name: str
    sampling_fraction: float
    shape: tuple[float, float, float]


EM = ShowerType("em", 0.5, (0.2, 0.2, 0.5))
HADRONIC = ShowerType("hadronic", 0.25, (0.2, 0.2, 1.0))


class Calorimeter:
    """Voxel calorimeter on a regular grid with its front face at ``z_range[0]``.

    ``shape_is`` says how the shower shape parameters are read: ``"variance"`` (the default:
    diagonal covariance entries, σ = sqrt(shape)) or ``"stddev"`` (σ = shape). Either way the
    shower depth is 2 × 5 σ_z and the shower centre sits half a depth behind the point where the
    particle crosses the front face, so a shower starts at the face and ±5σ_z fits in the depth.

    ``control_counts`` makes the Poisson number of deposits a controlled (proposable) random
    choice; the deposit positions are always recorded but not controlled.
    """

    def __init__(self, bins: Sequence[int] = (35, 35, 20),
                 x_range: Sequence[float] = (-3.0, 3.0), y_range: Sequence[float] = (-3.0, 3.0),
                 z_range: Sequence[float] = (4.0, 15.0), em: ShowerType = EM,
                 hadronic: ShowerType = HADRONIC, quantum: float = 0.005,
                 shape_is: str = "variance", control_counts: bool = True) -> None:
        if shape_is not in ("variance", "stddev"):
            raise ValueError(f"shape_is must be 'variance' or 'stddev', not {shape_is!r}")
        self.bins = tuple(int(b) for b in bins)
        self.lows = np.array([x_range[0], y_range[0], z_range[0]], dtype=float)
        self.highs = np.array([x_range[1], y_range[1], z_range[1]], dtype=float)
        self.scale = np.array(self.bins) / (self.highs - self.lows)
        self.em, self.hadronic = em, hadronic
        self.quantum = float(quantum)
        self.shape_is = shape_is
        self.control_counts = bool(control_counts)
        self._sigma = {t.name: self._sigma_of(t) for t in (em, hadronic)}
        nx, ny, nz = self.bins
        self._strides = np.array([ny * nz, nz, 1], dtype=np.intp)
        self._edges = self.edges

    @property
    def z_front(self) -> float:
        return float(self.lows[2])

    @property
    def edges(self) -> list[np.ndarray]:
        return [np.linspace(lo, hi, n + 1) for lo, hi, n in zip(self.lows, self.highs, self.bins)]

    def _sigma_of(self, t: ShowerType) -> np.ndarray:
        shape = np.array(t.shape, dtype=float)
        return np.sqrt(shape) if self.shape_is == "variance" else shape

    def shower_type(self, pdg: int) -> ShowerType | None:
        """EM for e± and γ, hadronic for hadrons, None for particles that deposit nothing."""
        if abs(pdg) in physics.EM_SHOWERING:
            return self.em
        if physics.is_hadron(pdg):
            return self.hadronic
        return None

    def sampling_fraction(self, pdg: int) -> float:
        t = self.shower_type(pdg)
        return 0.0 if t is None else t.sampling_fraction

    def expected_energy(self, particles: Iterable[Particle]) -> float:
        """Mean visible energy Σ f E over the particles that shower into the calorimeter."""
        return float(sum(self.sampling_fraction(p.pdg) * p.energy for p in particles
                         if p.visible and p.p4[3] > 0.0))

    def _geometry(self, particle: Particle) -> tuple[float, float, float, float] | None:
        # (cos theta, sin theta, cos phi, sin phi) of a particle flying towards the front face.
        px, py, pz = (float(v) for v in particle.p4[1:])
        p = math.sqrt(px * px + py * py + pz * pz)
        # A particle that does not fly towards the front face never reaches the calorimeter.
        if p <= 0.0 or pz <= 0.0:
            return None
        pt = math.hypot(px, py)
        cos_p, sin_p = (px / pt, py / pt) if pt > 0.0 else (1.0, 0.0)
        return pz / p, pt / p, cos_p, sin_p

    def _centre_distance(self, sigma: np.ndarray, cos_t: float) -> float:
        depth = 2.0 * 5.0 * sigma[2]
        return self.z_front / cos_t + 0.5 * depth

    def draw_count(self, particle: Particle, sampler: Sampler) -> int:
        """The Poisson number of deposits of a particle (0 for particles that deposit nothing)."""
        t = self.shower_type(particle.pdg)
        if t is None or not particle.visible or self._geometry(particle) is None:
            return 0
        return sampler.poisson(particle.energy * t.sampling_fraction / self.quantum,
                               address=f"calorimeter_{t.name}_deposits",
                               control=self.control_counts)

    def _shower(self, particle: Particle, n: int) -> tuple | None:
        """(shower type, direction cosines and sines, shower widths), or None when the
        particle leaves nothing."""
        t = self.shower_type(particle.pdg)
        geometry = self._geometry(particle)
        if n <= 0 or t is None or geometry is None:
            return None
        return t, geometry, self._sigma[t.name]

    def shower_points(self, particle: Particle, n: int, sampler: Sampler) -> np.ndarray | None:
        """Positions (n, 3) of a particle's ``n`` deposits: one batched Gaussian draw."""
        shower = self._shower(particle, n)
        if shower is None:
            return None
        t, (cos_t, sin_t, cos_p, sin_p), sigma = shower
        # Broadcast views keep the recorded parameters small however many deposits there are.
        local = sampler.normal(np.broadcast_to(0.0, (n, 3)), np.broadcast_to(sigma, (n, 3)),
                               address=f"calorimeter_{t.name}_positions", control=False)
        x, y = local[:, 0], local[:, 1]
        z = local[:, 2] + self._centre_distance(sigma, cos_t)
        # Rotate by theta about y, then by phi about z: the local z axis becomes the direction.
        xr = x * cos_t + z * sin_t
        out = np.empty((n, 3))
        out[:, 0] = xr * cos_p - y * sin_p
        out[:, 1] = xr * sin_p + y * cos_p
        out[:, 2] = z * cos_t - x * sin_t
        return out

    def expected_deposits(self, particle: Particle, n: int) -> np.ndarray | None:
        """Mean deposit per voxel of ``n`` deposits of a particle (the Gaussian integrated over
        the voxels), or None if it leaves nothing.

        The rotated shower is a Gaussian with covariance R diag(σ²) Rᵀ. For each z layer the
        (x, y) distribution is taken conditional on z at the layer centre; the small x-y
        correlation that the azimuthal rotation of the anisotropic shower induces is neglected
        (it is of order sin²θ (σ_z² - σ_x²), below 1% of σ_x² for these showers).
        """
        shower = self._shower(particle, n)
        if shower is None:
            return None
        t, (cos_t, sin_t, cos_p, sin_p), sigma = shower
        d = self._centre_distance(sigma, cos_t)
        u = np.array([sin_t * cos_p, sin_t * sin_p, cos_t])
        rot = np.array([[cos_p * cos_t, -sin_p, cos_p * sin_t],
                        [sin_p * cos_t, cos_p, sin_p * sin_t],
                        [-sin_t, 0.0, cos_t]])
        cov = (rot * (sigma * sigma)) @ rot.T
        mean = d * u
        ex, ey, ez = self._edges
        sz = math.sqrt(cov[2, 2])
        pz = np.diff(special.ndtr((ez - mean[2]) / sz))
        zc = 0.5 * (ez[1:] + ez[:-1])
        out = []
        for axis, edges in ((0, ex), (1, ey)):
            slope = cov[axis, 2] / cov[2, 2]
            s = math.sqrt(max(cov[axis, axis] - slope * cov[axis, 2], 1e-300))
            m = mean[axis] + slope * (zc - mean[2])
            out.append(np.diff(special.ndtr((edges[None, :] - m[:, None]) / s), axis=1))
        px, py = out
        return (n * self.quantum) * np.einsum("k,kx,ky->xyk", pz, px, py)

    def expected_counts(self, particles: Iterable[Particle]) -> np.ndarray:
        """The mean number of deposits per voxel of a final state, with each particle's
        Poisson number of deposits and their positions marginalised out.

        A particle leaves N ~ Poisson(λ) deposits, λ = E f / q, each landing in voxel v with
        probability P_v (its shower Gaussian integrated over the voxel). By Poisson thinning the
        voxel counts are independent Poisson(λ P_v), and sums of independent Poissons are
        Poisson: the counts of the whole final state are independent Poisson(Σ λ_i P_iv).
        """
        rates = np.zeros(self.bins)
        for p in particles:
            if p.visible:
                share = self.expected_deposits(p, p.energy * self.sampling_fraction(p.pdg)
                                               / self.quantum)
                if share is not None:   # None: the particle leaves nothing
                    rates += share
        return rates / self.quantum

    def expected_map(self, p4: np.ndarray, pdg: int) -> np.ndarray:
        """The mean deposit counts summed over depth, (n, nx, ny), of n particles of one kind
        (four-momenta ``p4``, (n, 4)): each shower's (x, y) marginal with its tilt's spread
        along the particle's azimuth, the small x-y correlation neglected as in
        :meth:`expected_deposits`. A coarse view of :meth:`expected_counts`, cheap enough to
        score hundreds of candidate particles at once."""
        p4 = np.atleast_2d(np.asarray(p4, dtype=float))
        nx, ny, _ = self.bins
        out = np.zeros((len(p4), nx, ny))
        t = self.shower_type(pdg)
        p = np.linalg.norm(p4[:, 1:], axis=1)
        reach = (p > 0.0) & (p4[:, 3] > 0.0)
        if t is None or not reach.any():
            return out
        q, e = p4[reach, 1:], p4[reach, 0]
        pt = np.hypot(q[:, 0], q[:, 1])
        cos_t, sin_t = q[:, 2] / p[reach], pt / p[reach]
        safe = np.where(pt > 0.0, pt, 1.0)
        cos_p = np.where(pt > 0.0, q[:, 0] / safe, 1.0)
        sin_p = np.where(pt > 0.0, q[:, 1] / safe, 0.0)
        sx, sy, sz = self._sigma[t.name] ** 2
        depth = self.z_front / cos_t + 5.0 * math.sqrt(sz)
        tilted = cos_t * cos_t * sx + sin_t * sin_t * sz
        spread_x = np.sqrt(cos_p * cos_p * tilted + sin_p * sin_p * sy)
        spread_y = np.sqrt(sin_p * sin_p * tilted + cos_p * cos_p * sy)
        ex, ey, _ = self._edges
        share_x = np.diff(special.ndtr((ex[None, :] - (depth * sin_t * cos_p)[:, None])
                                       / spread_x[:, None]), axis=1)
        share_y = np.diff(special.ndtr((ey[None, :] - (depth * sin_t * sin_p)[:, None])
                                       / spread_y[:, None]), axis=1)
        rate = e * t.sampling_fraction / self.quantum
        out[reach] = rate[:, None, None] * share_x[:, :, None] * share_y[:, None, :]
        return out

    def bin(self, points: np.ndarray) -> np.ndarray:
        """Sum deposits of one quantum each into the grid; points outside are dropped."""
        nx, ny, nz = self.bins
        if points.shape[0] == 0:
            return np.zeros(self.bins)
        idx = np.floor((points - self.lows) * self.scale).astype(np.intp)
        inside = np.all((idx >= 0) & (idx < np.array(self.bins)), axis=1)
        flat = idx[inside] @ self._strides
        counts = np.bincount(flat, minlength=nx * ny * nz)
        return (counts * self.quantum).reshape(self.bins)

    def simulate(self, particles: Iterable[Particle], sampler: Sampler,
                 expected: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Deposited energy (GeV) of a final state on the grid, and (when ``expected``) its mean
        given the drawn numbers of deposits. Per showering particle: one Poisson draw of the
        number of deposits, one batched Gaussian draw of their positions."""
        chunks = []
        mean = np.zeros(self.bins) if expected else None
        for p in particles:
            n = self.draw_count(p, sampler)
            if n <= 0:
                continue
            chunks.append(self.shower_points(p, n, sampler))
            if mean is not None:
                mean += self.expected_deposits(p, n)
        deposits = self.bin(np.concatenate(chunks)) if chunks else np.zeros(self.bins)
        return deposits, mean

    def deposit(self, particles: Iterable[Particle], sampler: Sampler) -> np.ndarray:
        """The (35, 35, 20) array of deposited energy (GeV) of a final state."""
        return self.simulate(particles, sampler, expected=False)[0]
