"""Moves of the tau momentum that leave every visible particle where it is.

In a decay τ → X ν with one neutrino (every hadronic channel), the calorimeter fixes the four-momentum P of X, and the neutrino is unseen. Every tau momentum p with
(p_τ − P)² = 0 explains the event equally well: the posterior of (px, py, pz) is a thin cone
surface around P, a ring in (px, py) whose extent (about a GeV) dwarfs its width, set by the
energy resolution. A random walk cannot follow it. These two moves travel along it exactly:

* ``rotate`` turns p about the axis of P by an angle α ~ Uniform(−π, π);
* ``rescale`` changes |p| by δ ~ Normal(0, ``scale``) and opens or closes the angle between p
  and P as the constraint demands, keeping the azimuth about P.

Both then set the decay angles of τ → X ν (uniform cos θ*, φ* in the tau rest frame) to those
that give back the same P, so X and everything it decays into are unchanged. Given its auxiliary
number, each move is an involution (−α, −δ undo it), so the Metropolis–Hastings ratio is the
prior ratio times the Jacobian of the map. The prior measure d³p dΩ* is, up to a constant,
d³P δ((p − P)²) d³p / E_P (two-body phase space); in coordinates (P, |p|, α), α the azimuth of
p about P, integrating the δ over the tau-X angle leaves d³P |p| d|p| dα / (E_P |P|). Both moves
shift |p| or α with P fixed, so the Jacobian is 1 for ``rotate`` and |p'| / |p| for ``rescale``.

X is one particle (τ → π ν), a resonance (τ → ρ ν, whose decay is drawn in its own rest frame
reached from the lab, so it follows P), or several particles from a phase-space decay
(τ → π⁺ π⁻ π⁻ π⁰ ν). There the decay draws X's mass and the directions inside X in frames
reached through the tau rest frame: the boost from X's rest frame to the lab through the moved
tau is the one through the old tau times a rotation (boosts along different axes compose to a
boost and a rotation), so the moves turn every direction inside X by the inverse rotation, which
puts X's particles back. A rotation keeps each direction's uniform measure: the Jacobian stays.

In a leptonic decay τ → ℓ ν ν̄ the calorimeter sees the charged lepton ℓ alone, and the two
neutrinos leave the tau momentum free in three dimensions, not on a cone. There the moves keep ℓ
where it is and move the tau:

* ``rotate`` turns p about the axis of ℓ by α ~ Uniform(−π, π);
* ``rescale`` shifts p by δ ~ Normal(0, ``scale``) in each component;

then set the decay variables to those that give back the same ℓ. The decay draws the mass m of
(ℓ ν_τ), the direction n₁ of ℓ in the rest frame of (ℓ ν_τ), and the direction n₂ of (ℓ ν_τ) in
the tau rest frame. Given m, the momentum ℓ* of ℓ in the tau rest frame fixes n₁ · n₂ (through
ℓ*'s energy) and the angle between n₂ and ℓ*; what is left is ψ, the azimuth of n₂ about ℓ*.
The moves keep m and ψ. The prior measure dΩ₁ dΩ₂ is, given m, a constant times
dE* dΩ(ℓ*) dψ = d³ℓ* dψ / (|ℓ*| E*) = d³ℓ dψ / (|ℓ*| E), the last step the invariance of d³ℓ / E
under the boost to the lab. With ℓ, m and ψ fixed, a move that shifts or turns p has the
Jacobian |ℓ*| / |ℓ*'|: 1 for ``rotate``, which keeps the angle between p and ℓ.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from . import physics
from .decay import TWO_PI, boost, breit_wigner_mass, two_body_momentum
from .physics import CHANNELS, TAU_MASS

PX, PY, PZ = "tau_px__Uniform__1", "tau_py__Uniform__1", "tau_pz__Uniform__1"
CHANNEL = f"tau_channel__Categorical(len_probs:{len(physics.CHANNEL_PROBS)})__1"


def _visible_system(values: Mapping[str, Any], channel: physics.Channel,
                    resonances: bool) -> tuple[float, tuple[str, str], list] | None:
    """X, the visible system recoiling against the tau neutrino: its mass, the addresses of
    its direction in the tau rest frame, and those of the directions inside X that the decay
    draws in X's rest frame (a phase-space decay into several particles); None when the
    channel has more than one neutrino."""
    prefix = f"tau_c{channel.index:02d}"
    if channel.leptonic:
        return None
    if resonances and channel.resonance is not None:
        r = channel.resonance
        base = f"{prefix}_bw_mass__Uniform__"
        accepted = max((int(a[len(base):]) for a in values if a.startswith(base)), default=0)
        if not accepted:
            return None
        lo = float(sum(physics.mass(p) for p in r.daughters))
        mass = breit_wigner_mass(float(values[base + str(accepted)]), r.mass, r.width, lo,
                                 TAU_MASS)
        return mass, _angle_keys(prefix, 1), []
    n = len(channel.daughters)
    if n == 2:
        return float(channel.masses[0]), _angle_keys(prefix, 1), []
    # Raw GENBOD (decay.n_body_decay): n - 2 mass uniforms per iteration, the accepted ones
    # last; X's mass is the largest of them placed between the masses, and its direction is
    # the last of the n - 1 directions drawn, the earlier ones lie inside X.
    iterations = sum(1 for a in values if a.startswith(f"{prefix}_genbod_accept__"))
    base = f"{prefix}_genbod_mass__Uniform__"
    accepted = [float(values[base + str(i)])
                for i in range((iterations - 1) * (n - 2) + 1, iterations * (n - 2) + 1)]
    masses = channel.masses
    mass = float(sum(masses[:-1])) + max(accepted) * (TAU_MASS - float(sum(masses)))
    dirs = f"{prefix}_genbod_dir"
    return mass, _angle_keys(dirs, n - 1), [_angle_keys(dirs, i) for i in range(1, n - 1)]


def _angle_keys(address: str, instance: int) -> tuple[str, str]:
    return (f"{address}_cos_theta__Uniform__{instance}", f"{address}_phi__Uniform__{instance}")


def _direction(cos_theta: float, phi: float) -> np.ndarray:
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    return np.array([sin_theta * math.cos(phi), sin_theta * math.sin(phi), cos_theta])


def _four(p: np.ndarray, mass: float) -> np.ndarray:
    return np.concatenate([[math.sqrt(float(p @ p) + mass * mass)], p])


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors that complete ``axis`` to a right-handed frame (they measure ψ)."""
    reference = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = reference - float(reference @ axis) * axis
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def _angles(n: np.ndarray) -> tuple[float, float]:
    return float(n[2]), math.atan2(n[1], n[0]) % TWO_PI


class _LeptonicDecay:
    """τ → ℓ ν_τ ν̄ as the decay draws it (see :func:`decay.n_body_decay`): the (ℓ ν_τ) mass,
    and the two directions by address, with what the moves need of them."""

    def __init__(self, values: Mapping[str, Any], channel: physics.Channel) -> None:
        prefix = f"tau_c{channel.index:02d}_genbod"
        base = f"{prefix}_mass__Uniform__"
        accepted = max(int(a[len(base):]) for a in values if a.startswith(base))
        m_lepton = float(channel.masses[0])
        self.mass = m_lepton + float(values[base + str(accepted)]) * (TAU_MASS - m_lepton)
        self.keys = [(f"{prefix}_dir_cos_theta__Uniform__{i}", f"{prefix}_dir_phi__Uniform__{i}")
                     for i in (1, 2)]
        # ℓ in the (ℓ ν_τ) rest frame, and (ℓ ν_τ) in the tau rest frame.
        self.p1 = two_body_momentum(self.mass, m_lepton, 0.0)
        self.e1 = math.sqrt(self.p1 ** 2 + m_lepton ** 2)
        p2 = two_body_momentum(TAU_MASS, self.mass, 0.0)
        self.gamma = math.sqrt(p2 * p2 + self.mass ** 2) / self.mass
        self.gamma_beta = p2 / self.mass
        self.n1, self.n2 = (_direction(float(values[c]), float(values[f])) for c, f in self.keys)

    def lepton_at_rest(self) -> np.ndarray:
        """ℓ's four-momentum in the tau rest frame."""
        sub = np.concatenate([[self.gamma * self.mass], self.gamma_beta * self.mass * self.n2])
        return boost(np.concatenate([[self.e1], self.p1 * self.n1]), sub, self.mass)[0]

    def directions_for(self, lepton: np.ndarray, psi: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The directions (n₁, n₂) that put ℓ at ``lepton`` (four-momentum in the tau rest
        frame) with n₂ at azimuth ``psi`` about it; None when this mass cannot."""
        cos12 = (lepton[0] - self.gamma * self.e1) / (self.gamma_beta * self.p1)
        if not -1.0 < cos12 < 1.0:
            return None
        size = float(np.linalg.norm(lepton[1:]))
        axis = lepton[1:] / size
        cos_n2 = (self.gamma * self.p1 * cos12 + self.gamma_beta * self.e1) / size
        sin_n2 = math.sqrt(max(0.0, 1.0 - cos_n2 * cos_n2))
        e1, e2 = _frame(axis)
        n2 = cos_n2 * axis + sin_n2 * (math.cos(psi) * e1 + math.sin(psi) * e2)
        across = axis - cos_n2 * n2
        width = float(np.linalg.norm(across))
        if width == 0.0:
            return None
        sin12 = math.sqrt(1.0 - cos12 * cos12)
        return cos12 * n2 + sin12 * across / width, n2

    def azimuth(self, lepton: np.ndarray) -> float:
        """ψ: the azimuth of n₂ about ℓ's direction in the tau rest frame."""
        e1, e2 = _frame(lepton[1:] / np.linalg.norm(lepton[1:]))
        return math.atan2(float(self.n2 @ e2), float(self.n2 @ e1))


class TauMomentumMoves:
    """The two moves, for :meth:`TauDecaySimulator.moves`."""

    def __init__(self, resonances: bool = True, scale: float = 1.0) -> None:
        self.resonances = bool(resonances)
        self.scale = float(scale)

    def moves(self) -> tuple:
        return (self.rotate, self.rescale)

    def rotate(self, values: Mapping[str, Any], rng: np.random.Generator) -> Any:
        alpha = float(rng.uniform(-math.pi, math.pi))
        c, s = math.cos(alpha), math.sin(alpha)

        def turn(p: np.ndarray, axis: np.ndarray) -> np.ndarray:
            return p * c + np.cross(axis, p) * s + axis * float(axis @ p) * (1.0 - c)

        return self._move(values, lambda p, axis, *_: (turn(p, axis), 0.0), turn)

    def rescale(self, values: Mapping[str, Any], rng: np.random.Generator) -> Any:
        delta = float(rng.normal(0.0, self.scale))

        def stretch(p: np.ndarray, axis: np.ndarray, e_x: float, p_x: float,
                    m_x: float) -> tuple[np.ndarray, float] | None:
            def cone(q: float) -> float:   # cos of the tau-X angle that (p_τ − P)² = 0 needs
                e = math.sqrt(q * q + TAU_MASS * TAU_MASS)
                return (2.0 * e * e_x - TAU_MASS ** 2 - m_x ** 2) / (2.0 * q * p_x)

            size = float(np.linalg.norm(p))
            new_size = size + delta
            along = float(p @ axis)
            across = p - along * axis
            width = float(np.linalg.norm(across))
            if new_size <= 0.0 or width == 0.0:
                return None
            cos_new = along / size - cone(size) + cone(new_size)
            if abs(cos_new) >= 1.0:
                return None
            sin_new = math.sqrt(1.0 - cos_new * cos_new)
            new = new_size * (cos_new * axis + sin_new * across / width)
            return new, math.log(new_size / size)

        def shift(p: np.ndarray, axis: np.ndarray) -> np.ndarray:
            # δ, drawn for every channel, is the first component; the other two are drawn only
            # here, so a hadronic decay's moves draw one number each.
            return p + np.array([delta, rng.normal(0.0, self.scale), rng.normal(0.0, self.scale)])

        return self._move(values, stretch, shift)

    def _move(self, values: Mapping[str, Any], step: Any, lepton_step: Any) -> Any:
        """Apply ``step(p_tau, axis of P, E_X, |P|, m_X) -> (new p_tau, log Jacobian) | None``
        and solve for the decay angles that keep P; in a leptonic decay, apply
        ``lepton_step(p_tau, axis of ℓ) -> new p_tau`` and solve for those that keep ℓ."""
        if CHANNEL not in values:
            return None
        channel = CHANNELS[int(values[CHANNEL])]
        if channel.leptonic:
            return self._move_leptonic(values, channel, lepton_step)
        system = _visible_system(values, channel, self.resonances)
        if system is None:
            return None
        m_x, (cos_key, phi_key), inner = system
        p_tau = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        p_star = two_body_momentum(TAU_MASS, m_x, 0.0)
        e_star = math.sqrt(p_star * p_star + m_x * m_x)
        n = _direction(float(values[cos_key]), float(values[phi_key]))
        x4 = boost(np.concatenate([[e_star], p_star * n]), _four(p_tau, TAU_MASS), TAU_MASS)[0]
        p_x = x4[1:]
        axis = p_x / np.linalg.norm(p_x)
        moved = step(p_tau, axis, float(x4[0]), float(np.linalg.norm(p_x)), m_x)
        if moved is None:
            return None
        new_tau, log_jacobian = moved
        # X in the rest frame of the moved tau: the boost by the tau's reversed momentum.
        rest = boost(x4, _four(-new_tau, TAU_MASS), TAU_MASS)[0][1:]
        size = float(np.linalg.norm(rest))
        if abs(size - p_star) > 1e-6 * max(p_star, 1.0):
            return None   # no such decay (numerically off the cone)
        new_n = rest / size
        new = {PX: float(new_tau[0]), PY: float(new_tau[1]), PZ: float(new_tau[2])}
        new[cos_key], new[phi_key] = _angles(new_n)
        if inner:
            # X's rest frame reached through the moved tau is turned against the one reached
            # through the old tau (boosts along different axes compose to a boost and a
            # rotation); turning every direction inside X back keeps X's particles in place.
            # A rotation keeps the uniform measure of each direction: the Jacobian stays.
            frames = np.eye(4)
            for parent, mass in ((np.concatenate([[e_star], p_star * n]), m_x),
                                 (_four(p_tau, TAU_MASS), TAU_MASS),
                                 (_four(-new_tau, TAU_MASS), TAU_MASS),
                                 (np.concatenate([[e_star], -p_star * new_n]), m_x)):
                frames = boost(frames, parent, mass)
            turn = frames[1:, 1:].T   # rows were the basis vectors: columns are their images
            for keys in inner:
                new[keys[0]], new[keys[1]] = _angles(
                    turn @ _direction(float(values[keys[0]]), float(values[keys[1]])))
        return new, log_jacobian

    @staticmethod
    def _move_leptonic(values: Mapping[str, Any], channel: physics.Channel, step: Any) -> Any:
        decay = _LeptonicDecay(values, channel)
        p_tau = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        at_rest = decay.lepton_at_rest()
        lepton = boost(at_rest, _four(p_tau, TAU_MASS), TAU_MASS)[0]
        new_tau = step(p_tau, lepton[1:] / np.linalg.norm(lepton[1:]))
        moved = boost(lepton, _four(-new_tau, TAU_MASS), TAU_MASS)[0]
        directions = decay.directions_for(moved, decay.azimuth(at_rest))
        if directions is None:
            return None   # this (ℓ ν_τ) mass cannot put ℓ there
        decay.n1, decay.n2 = directions
        if not np.allclose(decay.lepton_at_rest(), moved, rtol=0.0, atol=1e-9):
            return None   # no such decay (numerically off the solution)
        new = {PX: float(new_tau[0]), PY: float(new_tau[1]), PZ: float(new_tau[2])}
        for (cos_key, phi_key), n in zip(decay.keys, directions):
            new[cos_key], new[phi_key] = _angles(n)
        return new, math.log(np.linalg.norm(at_rest[1:]) / np.linalg.norm(moved[1:]))


__all__ = ["TauMomentumMoves"]
