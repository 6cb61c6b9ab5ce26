"""Decay kinematics: two-body decays, raw-GENBOD phase space with accept/reject, resonances.

Every random number is drawn through a :class:`Sampler`, so the same code runs under the
probabilistic-programming runtime (``model.PPLSampler``: each draw is a ``sample`` statement, and
each accept/reject loop leaves one group of draws per iteration in the trace) and under a plain
numpy generator (:class:`NumpySampler`, used by the tests and for bulk studies).

Four-vectors are numpy arrays ``[E, px, py, pz]`` in GeV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, Sequence

import numpy as np

from . import physics
from .physics import CHANNELS, ETA, ETA_DECAY_PROBS, ETA_DECAYS, PHOTON, PI0, TAU_MASS, Channel

TWO_PI = 2.0 * math.pi

# Safety factor over the largest phase-space weight seen in a fixed-seed scan; it keeps the
# accept/reject bound above the true maximum (weights are smooth, the scan dense) while leaving
# the acceptance per iteration in the 0.2-0.65 range of Sherpa's samplers.
WEIGHT_BOUND_MARGIN = 1.1
_BOUND_SCAN_POINTS = 50_000


class Sampler(Protocol):
    """Where the kinematics get their random numbers from.

    ``address`` is the base address of the random choice (stable across runs, so repeated draws
    in a loop share it and get successive instance numbers).
    """

    def uniform(self, low: float, high: float, address: str, name: str | None = None) -> float: ...

    def categorical(self, probs: np.ndarray, address: str, name: str | None = None) -> int: ...

    def poisson(self, rate: float, address: str, control: bool = True) -> int: ...

    def normal(self, mean: np.ndarray, stddev: np.ndarray, address: str,
               control: bool = False) -> np.ndarray: ...


class NumpySampler:
    """A :class:`Sampler` drawing from a numpy generator; optionally counts draws per address,
    and records the uniform draws by the addresses a trace gives them
    (``address__Uniform__n``), so that :class:`ReplaySampler` can run the decay again."""

    def __init__(self, rng: np.random.Generator | int | None = None, count: bool = False,
                 record: bool = False) -> None:
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.counts: dict[str, int] | None = {} if count or record else None
        self.values: dict[str, float] | None = {} if record else None

    def _count(self, address: str) -> None:
        if self.counts is not None:
            self.counts[address] = self.counts.get(address, 0) + 1

    def uniform(self, low: float, high: float, address: str, name: str | None = None) -> float:
        self._count(address)
        value = float(self.rng.uniform(low, high))
        if self.values is not None:
            self.values[f"{address}__Uniform__{self.counts[address]}"] = value
        return value

    def categorical(self, probs: np.ndarray, address: str, name: str | None = None) -> int:
        self._count(address)
        return int(self.rng.choice(len(probs), p=probs))

    def poisson(self, rate: float, address: str, control: bool = True) -> int:
        self._count(address)
        return int(self.rng.poisson(rate))

    def normal(self, mean: np.ndarray, stddev: np.ndarray, address: str,
               control: bool = False) -> np.ndarray:
        self._count(address)
        return self.rng.normal(mean, stddev)


class ReplaySampler:
    """A :class:`Sampler` that gives back a trace's uniform draws by address and instance (a
    ``KeyError`` where the decay asks for one the trace lacks)."""

    def __init__(self, values: Any) -> None:
        self.values: Any = values
        self.seen: dict[str, int] = {}

    def uniform(self, low: float, high: float, address: str, name: str | None = None) -> float:
        self.seen[address] = self.seen.get(address, 0) + 1
        return float(self.values[f"{address}__Uniform__{self.seen[address]}"])


class Particle:
    """A particle of the event record: PDG id and four-momentum ``[E, px, py, pz]`` (GeV)."""

    __slots__ = ("pdg", "p4", "mass")

    def __init__(self, pdg: int, p4: np.ndarray, mass: float | None = None) -> None:
        self.pdg = int(pdg)
        self.p4 = p4
        self.mass = physics.mass(pdg) if mass is None else mass

    @property
    def energy(self) -> float:
        return float(self.p4[0])

    @property
    def charge(self) -> int:
        return physics.charge(self.pdg)

    @property
    def visible(self) -> bool:
        """Whether the calorimeter can see the particle at all (neutrinos cannot)."""
        return not physics.is_neutrino(self.pdg)

    @property
    def name(self) -> str:
        return physics.particle_name(self.pdg)

    @property
    def momentum(self) -> float:
        return float(math.sqrt(self.p4[1] ** 2 + self.p4[2] ** 2 + self.p4[3] ** 2))

    @property
    def theta(self) -> float:
        return float(math.atan2(math.hypot(self.p4[1], self.p4[2]), self.p4[3]))

    @property
    def phi(self) -> float:
        return float(math.atan2(self.p4[2], self.p4[1]))

    def __repr__(self) -> str:
        e, px, py, pz = self.p4
        return f"Particle({self.name}, E={e:.4f}, p=({px:.4f}, {py:.4f}, {pz:.4f}))"


@dataclass
class DecayEvent:
    """The outcome of one tau decay: the channel and the stable final state."""

    tau: Particle
    channel: Channel
    final_state: list[Particle]
    resonance_mass: float | None = None

    @property
    def total_p4(self) -> np.ndarray:
        return np.sum([p.p4 for p in self.final_state], axis=0)


# ---------------------------------------------------------------------------------------------
# Elementary kinematics


def two_body_momentum(m: float, m1: float, m2: float) -> float:
    """Momentum of either daughter in the rest frame of a parent of mass m (0 below threshold)."""
    x = (m - m1 - m2) * (m + m1 + m2) * (m - m1 + m2) * (m + m1 - m2)
    return math.sqrt(x) / (2.0 * m) if x > 0.0 else 0.0


def _two_body_momentum_array(m: np.ndarray, m1: np.ndarray | float, m2: float) -> np.ndarray:
    x = (m - m1 - m2) * (m + m1 + m2) * (m - m1 + m2) * (m + m1 - m2)
    return np.sqrt(np.maximum(x, 0.0)) / (2.0 * m)


def boost(p4: np.ndarray, parent: np.ndarray, parent_mass: float) -> np.ndarray:
    """Boost four-vectors ``p4`` (shape (4,) or (k, 4)) from the rest frame of ``parent`` to the
    frame in which the parent has four-momentum ``parent``."""
    gamma = parent[0] / parent_mass
    beta = parent[1:] / parent[0]
    b2 = float(beta @ beta)
    if b2 <= 0.0:
        return np.array(p4, dtype=float)
    p4 = np.atleast_2d(p4)
    bp = p4[:, 1:] @ beta
    energy = gamma * (p4[:, 0] + bp)
    coef = (gamma - 1.0) * bp / b2 + gamma * p4[:, 0]
    out = np.empty_like(p4, dtype=float)
    out[:, 0] = energy
    out[:, 1:] = p4[:, 1:] + coef[:, None] * beta[None, :]
    return out


def _direction(sampler: Sampler, address: str) -> np.ndarray:
    # Isotropic: uniform cos(theta) and phi.
    cos_theta = sampler.uniform(-1.0, 1.0, address=f"{address}_cos_theta")
    phi = sampler.uniform(0.0, TWO_PI, address=f"{address}_phi")
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    return np.array([sin_theta * math.cos(phi), sin_theta * math.sin(phi), cos_theta])


def two_body_decay(parent: np.ndarray, parent_mass: float, m1: float, m2: float,
                   sampler: Sampler, address: str) -> np.ndarray:
    """Isotropic two-body decay in the parent rest frame, boosted to the lab: (2, 4) array."""
    p = two_body_momentum(parent_mass, m1, m2)
    n = _direction(sampler, address)
    rest = np.empty((2, 4))
    rest[0, 0] = math.sqrt(p * p + m1 * m1)
    rest[1, 0] = math.sqrt(p * p + m2 * m2)
    rest[0, 1:] = p * n
    rest[1, 1:] = -p * n
    return boost(rest, parent, parent_mass)


# ---------------------------------------------------------------------------------------------
# n-body phase space (raw GENBOD, as in CERNLIB GENBOD / ROOT TGenPhaseSpace)


def leptonic_weight(s: np.ndarray | float, parent_mass: float, lepton_mass: float) -> Any:
    """Normalised V-A matrix element of tau -> l nu_tau anti-nu_l (in [0, 1]).

    With daughters ordered (l, nu_tau, anti-nu_l) and s the squared invariant mass of
    (l, nu_tau), |M|^2 ∝ (p_tau·p_anti-nu)(p_l·p_nu_tau) = (M² - s)(s - m_l²)/4 for massless
    neutrinos, whose maximum is at s = (M² + m_l²)/2. This gives the Michel spectrum.
    """
    m2, l2 = parent_mass * parent_mass, lepton_mass * lepton_mass
    return 4.0 * (m2 - s) * (s - l2) / ((m2 - l2) ** 2)


def phase_space_weights(parent_mass: float, masses: Sequence[float], u: np.ndarray,
                        leptonic: bool = False) -> np.ndarray:
    """GENBOD weights for uniforms ``u`` of shape (N, n-2) (sorted along axis 1 here)."""
    masses = np.asarray(masses, dtype=float)
    n = len(masses)
    r = np.sort(np.atleast_2d(u), axis=1)
    inv = _invariant_masses(parent_mass, masses, r)
    w = np.ones(r.shape[0])
    for i in range(1, n):
        w = w * _two_body_momentum_array(inv[:, i], inv[:, i - 1], masses[i])
    if leptonic:
        w = w * leptonic_weight(inv[:, 1] ** 2, parent_mass, masses[0])
    return w


def _invariant_masses(parent_mass: float, masses: np.ndarray, r: np.ndarray) -> np.ndarray:
    # Invariant masses of the subsystems (0), (0,1), (0,1,2), ..., all: the sorted uniforms
    # place the kinetic energy T = M - sum(m) between them.
    n = len(masses)
    cum = np.cumsum(masses)
    kinetic = parent_mass - cum[-1]
    inv = np.empty((r.shape[0], n))
    inv[:, 0] = masses[0]
    inv[:, 1:n - 1] = cum[1:n - 1][None, :] + r * kinetic
    inv[:, n - 1] = parent_mass
    return inv


def _genbod_point(parent_mass: float, masses: tuple[float, ...], r: list[float],
                  leptonic: bool) -> tuple[list[float], float]:
    # Scalar version of _invariant_masses + phase_space_weights for one point (r sorted): the
    # loop body runs for every iteration of every trace, where numpy's per-call cost dominates.
    n = len(masses)
    kinetic = parent_mass - sum(masses)
    inv = [masses[0]]
    acc = masses[0]
    for i in range(1, n - 1):
        acc += masses[i]
        inv.append(acc + r[i - 1] * kinetic)
    inv.append(parent_mass)
    w = 1.0
    for i in range(1, n):
        w *= two_body_momentum(inv[i], inv[i - 1], masses[i])
    if leptonic:
        w *= leptonic_weight(inv[1] * inv[1], parent_mass, masses[0])
    return inv, w


@lru_cache(maxsize=None)
def phase_space_bound(parent_mass: float, masses: tuple[float, ...], leptonic: bool = False) -> float:
    """Upper bound of the GENBOD weight: the maximum over a fixed-seed scan, with a margin.

    The classic analytic GENBOD bound is loose for many bodies (acceptance below 1% for six
    bodies); a scanned bound keeps the acceptance per iteration between about 0.2 and 0.65.
    """
    n = len(masses)
    rng = np.random.default_rng(20190101 + n)
    u = rng.random((_BOUND_SCAN_POINTS, n - 2))
    w = phase_space_weights(parent_mass, masses, u, leptonic)
    return float(w.max()) * WEIGHT_BOUND_MARGIN


def phase_space_acceptance(parent_mass: float, masses: Sequence[float], leptonic: bool = False,
                           num: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo estimate (and its standard error) of the accept probability per iteration."""
    masses = tuple(float(m) for m in masses)
    rng = np.random.default_rng(seed)
    u = rng.random((num, len(masses) - 2))
    ratio = phase_space_weights(parent_mass, masses, u, leptonic) / phase_space_bound(
        parent_mass, masses, leptonic)
    ratio = np.minimum(ratio, 1.0)
    return float(ratio.mean()), float(ratio.std(ddof=1) / math.sqrt(num))


def n_body_decay(parent: np.ndarray, parent_mass: float, masses: Sequence[float],
                 sampler: Sampler, address: str, leptonic: bool = False) -> np.ndarray:
    """Phase-space decay into ``len(masses)`` >= 3 bodies; returns a (n, 4) array (lab frame).

    The invariant masses are drawn with an accept/reject loop (raw GENBOD): each iteration draws
    n-2 uniforms and one uniform for the accept test, all through the sampler, so the trace holds
    one group of draws per iteration. Directions are drawn once the masses are accepted.
    """
    masses_t = tuple(float(m) for m in masses)
    n = len(masses_t)
    m_arr = masses_t
    bound = phase_space_bound(parent_mass, masses_t, leptonic)
    mass_address, accept_address = f"{address}_genbod_mass", f"{address}_genbod_accept"
    while True:
        u = sorted([sampler.uniform(0.0, 1.0, address=mass_address) for _ in range(n - 2)])
        inv, w = _genbod_point(parent_mass, masses_t, u, leptonic)
        if sampler.uniform(0.0, 1.0, address=accept_address) * bound < w:
            break
    # Build up the final state from the lightest subsystem outwards: subsystem i (mass inv[i],
    # made of particles 0..i) recoils against particle i+1 in the rest frame of subsystem i+1.
    p = two_body_momentum(inv[1], m_arr[0], m_arr[1])
    nvec = _direction(sampler, f"{address}_genbod_dir")
    out = np.empty((n, 4))
    out[0, 0] = math.sqrt(p * p + m_arr[0] ** 2)
    out[1, 0] = math.sqrt(p * p + m_arr[1] ** 2)
    out[0, 1:] = p * nvec
    out[1, 1:] = -p * nvec
    for i in range(1, n - 1):
        p = two_body_momentum(inv[i + 1], inv[i], m_arr[i + 1])
        nvec = _direction(sampler, f"{address}_genbod_dir")
        sub = np.empty(4)
        sub[0] = math.sqrt(p * p + inv[i] ** 2)
        sub[1:] = p * nvec
        out[: i + 1] = boost(out[: i + 1], sub, inv[i])
        out[i + 1, 0] = math.sqrt(p * p + m_arr[i + 1] ** 2)
        out[i + 1, 1:] = -p * nvec
    return boost(out, parent, parent_mass)


def decay_at_rest_or_moving(parent: np.ndarray, parent_mass: float, masses: Sequence[float],
                            sampler: Sampler, address: str, leptonic: bool = False) -> np.ndarray:
    """Two-body or n-body phase-space decay, whichever the multiplicity calls for."""
    if len(masses) == 2:
        return two_body_decay(parent, parent_mass, masses[0], masses[1], sampler, address)
    return n_body_decay(parent, parent_mass, masses, sampler, address, leptonic)


# ---------------------------------------------------------------------------------------------
# Resonances


def _bw_cdf(m: float, m0: float, width: float) -> float:
    return 0.5 + math.atan((m - m0) / (0.5 * width)) / math.pi


def _resonance_mass_weight(m: float, parent_mass: float, daughters: Sequence[float]) -> float:
    # Phase-space factor of tau -> R nu times a threshold factor of R -> daughters: the
    # momentum of the first daughter against the rest (exact two-body momentum for two bodies).
    return (two_body_momentum(parent_mass, m, 0.0)
            * two_body_momentum(m, daughters[0], float(sum(daughters[1:]))))


@lru_cache(maxsize=None)
def resonance_bound(parent_mass: float, daughters: tuple[float, ...]) -> float:
    """Upper bound of the resonance-mass weight (dense grid maximum with a margin)."""
    grid = np.linspace(sum(daughters), parent_mass, 4001)
    w = (_two_body_momentum_array(np.full_like(grid, parent_mass), grid, 0.0)
         * _two_body_momentum_array(grid, daughters[0], float(sum(daughters[1:]))))
    return float(w.max()) * 1.02


def breit_wigner_mass(c: float, m0: float, width: float, lo: float, hi: float) -> float:
    """The Breit-Wigner mass at cumulative probability ``c``, kept in [lo, hi]."""
    return min(max(m0 + 0.5 * width * math.tan(math.pi * (c - 0.5)), lo), hi)


def resonance_mass(m0: float, width: float, daughters: Sequence[float], parent_mass: float,
                   sampler: Sampler, address: str) -> float:
    """Draw a resonance mass: a Breit-Wigner truncated to the kinematic range (one uniform mapped
    through the inverse CDF), accepted with the phase-space weight of tau -> R nu, R -> daughters.
    """
    daughters_t = tuple(float(m) for m in daughters)
    lo, hi = sum(daughters_t), parent_mass
    c_lo, c_hi = _bw_cdf(lo, m0, width), _bw_cdf(hi, m0, width)
    bound = resonance_bound(parent_mass, daughters_t)
    while True:
        c = sampler.uniform(c_lo, c_hi, address=f"{address}_bw_mass")
        m = breit_wigner_mass(c, m0, width, lo, hi)
        w = _resonance_mass_weight(m, parent_mass, daughters_t)
        if sampler.uniform(0.0, 1.0, address=f"{address}_bw_accept") * bound < w:
            return m


# ---------------------------------------------------------------------------------------------
# The tau decay


def tau_four_momentum(px: float, py: float, pz: float) -> np.ndarray:
    return np.array([math.sqrt(px * px + py * py + pz * pz + TAU_MASS * TAU_MASS), px, py, pz])


def decay_tau(p_tau: np.ndarray, channel: int | Channel, sampler: Sampler,
              resonances: bool = True, decay_pi0: bool = True,
              decay_eta: bool = True) -> DecayEvent:
    """Decay a tau- of four-momentum ``p_tau`` through ``channel`` into its stable final state.

    With ``resonances``, the channels that proceed mainly through rho(770), K*(892) or a1(1260)
    go tau -> R nu_tau, R -> hadrons; otherwise, and for all other channels, the decay is flat
    phase space (times the V-A matrix element for leptonic channels). Then pi0 -> gamma gamma and
    eta -> (gamma gamma | 3 pi0 | pi+ pi- pi0 | pi+ pi- gamma) when enabled, so photons shower
    electromagnetically.
    """
    ch = CHANNELS[channel] if not isinstance(channel, Channel) else channel
    tau = Particle(physics.TAU, p_tau, TAU_MASS)
    address = f"tau_c{ch.index:02d}"
    primaries: list[Particle] = []
    res_mass = None
    if resonances and ch.resonance is not None:
        r = ch.resonance
        d_masses = [physics.mass(p) for p in r.daughters]
        res_mass = resonance_mass(r.mass, r.width, d_masses, TAU_MASS, sampler, address)
        pr = two_body_decay(p_tau, TAU_MASS, res_mass, 0.0, sampler, address)
        primaries.append(Particle(physics.NU_TAU, pr[1]))
        products = decay_at_rest_or_moving(pr[0], res_mass, d_masses, sampler,
                                           f"{address}_{physics.particle_name(r.pdg, True)[:-1]}")
        primaries[:0] = [Particle(pdg, p4) for pdg, p4 in zip(r.daughters, products)]
    else:
        products = decay_at_rest_or_moving(p_tau, TAU_MASS, list(ch.masses), sampler, address,
                                           leptonic=ch.leptonic)
        primaries = [Particle(pdg, p4) for pdg, p4 in zip(ch.daughters, products)]

    final: list[Particle] = []
    pending = primaries
    while pending:
        nxt: list[Particle] = []
        for part in pending:
            if part.pdg == PI0 and decay_pi0:
                gg = two_body_decay(part.p4, part.mass, 0.0, 0.0, sampler, "pi0_decay")
                nxt += [Particle(PHOTON, gg[0]), Particle(PHOTON, gg[1])]
            elif part.pdg == ETA and decay_eta:
                mode = sampler.categorical(ETA_DECAY_PROBS, address="eta_decay_mode")
                pdgs = ETA_DECAYS[mode][0]
                p4s = decay_at_rest_or_moving(part.p4, part.mass, [physics.mass(p) for p in pdgs],
                                              sampler, f"eta_decay_m{mode}")
                nxt += [Particle(pdg, p4) for pdg, p4 in zip(pdgs, p4s)]
            else:
                final.append(part)
        pending = nxt
    return DecayEvent(tau, ch, final, res_mass)
