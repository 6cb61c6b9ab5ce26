"""Jumps between decay channels that the calorimeter cannot tell apart: a pion for a kaon, and
a K_S for a K_L.

``relabel`` moves a decay between channels whose products differ only in K_S against K_L
(τ → π⁻ K_S ν and π⁻ K_L ν, …): both are stable hadrons of one mass here, so the decay's draws
carry over unchanged to the other channel's addresses, with the same ranges and the same accept
bounds. The partner is drawn uniformly from the other members of the class (π⁻ K_S K_L, π⁻ K_S
K_S and π⁻ K_L K_L are three), so the proposal is symmetric and the Jacobian 1: the posterior
odds are the prior's, as they must be where the data cannot tell.

τ → π⁻ ν and τ → K⁻ ν, and τ → ρ⁻ ν, ρ⁻ → π⁻ π⁰ and τ → K*⁻ ν, K*⁻ → K⁻ π⁰, leave the same
calorimeter picture when the charged hadron has the same energy and direction: the calorimeter
sees a hadron's energy and direction, not its mass. Their posterior odds are then set by the
prior and the kinematics, yet no generic move finds them: a prior redraw of the channel draws
the new channel's kinematics afresh, far from the data. ``swap`` changes the hadron's species,
keeps its energy and direction and every other visible particle (the π⁰, so its photons), and
moves the tau to keep the decay possible:

* the visible system X (the hadron, or the resonance) has a new four-momentum P′ (the hadron's
  momentum is √(E² − m′²) along the same direction) and so a new mass;
* the tau keeps |p| and its azimuth α about X's direction, and takes the angle to X that
  (p_τ − P′)² = 0 (the neutrino is massless) demands;
* the decay angles are those that give back the new momenta: X's direction in the tau rest frame,
  the hadron's in X's rest frame (reached from the lab, as the decay draws it), and the
  resonance mass's Breit–Wigner quantile;
* the resonance mass's accept test keeps its place under the weight: u′ = u · (w′/B′) / (w/B),
  with w the mass weight and B its bound, so the accepted draw is accepted again; a rejected
  draw keeps its relative place in the Breit–Wigner range and must stay rejected.

Each swap is its own reverse. The Metropolis–Hastings ratio needs the Jacobian of the map from
the decay's draws to the visible momenta. With y = (p_h, p_π⁰, |p|, α) and the draws x = (p_τ,
Breit–Wigner quantile c, X's direction Ω₁, the hadron's direction Ω₂): two-body phase space gives
dΩ₁ ∝ d³P δ((p_τ − P)²) / (p*(m) E_P) (p* the momentum of X in the tau rest frame), integrating the
δ over the tau–X angle d³p δ(·) ∝ |p| d|p| dα / |P|, and the resonance's decay d³P dm dΩ₂ ∝ E_P
d³p_h d³p_π⁰ / (q*(m) E_h E_π⁰) (q* the hadron's momentum in X's rest frame), so

    dx ∝ f(m) |p| / (p*(m) q*(m) |P| E_h E_π⁰) dy,

f(m) = dc/dm the Breit–Wigner density. For τ → h ν (no resonance, X = h): dx ∝ |p| / (p*(m_h)
|P| E_h) dy. The hadron's step at fixed energy and direction has d³p′/d³p = |p_h′| / |p_h|. The
log-ratio is the difference of log J between the new and old coordinates, plus that step, the
accept test's scale log((w′/B′) / (w/B)), and for each rejected draw the ratio of the ranges;
the engine adds the prior ratio of the two traces (the channel's branching ratios, the ranges of
the Breit–Wigner uniforms).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Container, Mapping, Sequence

import numpy as np

from . import physics
from .decay import (_bw_cdf, _resonance_mass_weight, boost, breit_wigner_mass,
                    resonance_bound, two_body_momentum)
from .moves import CHANNEL, PX, PY, PZ, _angle_keys, _angles, _direction, _four, _frame
from .physics import CHANNELS, TAU_MASS

# Channel pairs that differ in the charged hadron alone: π⁻ ν ↔ K⁻ ν, ρ⁻ ν ↔ K*⁻ ν (K⁻ π⁰).
PARTNERS = {2: 3, 3: 2, 4: 9, 9: 4}


def _look_alikes() -> dict[int, tuple[int, ...]]:
    """Each channel's class of channels whose decays differ only in K_S against K_L."""
    def key(channel: physics.Channel) -> tuple:
        neutral = lambda pdg: physics.K_SHORT if pdg == physics.K_LONG else pdg  # noqa: E731
        r = channel.resonance
        return (tuple(map(neutral, channel.daughters)), channel.leptonic,
                None if r is None else (r.pdg, tuple(map(neutral, r.daughters))))
    classes: dict[tuple, list[int]] = {}
    for channel in CHANNELS:
        classes.setdefault(key(channel), []).append(channel.index)
    return {i: tuple(c) for c in classes.values() if len(c) > 1 for i in c}


LOOK_ALIKES = _look_alikes()


class _Resonance:
    """The resonance of a channel as the decay draws it: the Breit–Wigner range, the density of
    its quantile, the accept weight and bound, and the addresses of its draws."""

    def __init__(self, channel: physics.Channel) -> None:
        r = channel.resonance
        self.m0, self.width = r.mass, r.width
        self.daughters = tuple(float(physics.mass(p)) for p in r.daughters)
        self.lo = float(sum(self.daughters))
        self.c_lo, self.c_hi = (_bw_cdf(m, self.m0, self.width) for m in (self.lo, TAU_MASS))
        self.bound = resonance_bound(TAU_MASS, self.daughters)
        prefix = f"tau_c{channel.index:02d}"
        self.mass_key = f"{prefix}_bw_mass__Uniform__"
        self.accept_key = f"{prefix}_bw_accept__Uniform__"
        self.decay_keys = _angle_keys(f"{prefix}_{physics.particle_name(r.pdg, True)[:-1]}", 1)

    def mass(self, c: float) -> float:
        return breit_wigner_mass(c, self.m0, self.width, self.lo, TAU_MASS)

    def accept_level(self, m: float) -> float:
        """w(m) / B: the accept test's threshold."""
        return _resonance_mass_weight(m, TAU_MASS, self.daughters) / self.bound

    def log_density(self, m: float) -> float:
        """log f(m), f = dc/dm."""
        half = 0.5 * self.width
        return math.log(half / (math.pi * ((m - self.m0) ** 2 + half * half)))


class ChannelJumps:
    """The swap and the relabel, for :meth:`TauDecaySimulator.jumps`. Without resonances
    τ → π⁻ π⁰ ν and τ → K⁻ π⁰ ν are three-body phase space, which the swap does not cover."""

    def __init__(self, resonances: bool = True) -> None:
        self.resonances = bool(resonances)
        # The channels each jump moves.
        self.swaps = frozenset(c for c in PARTNERS
                               if self.resonances or CHANNELS[c].resonance is None)
        self.relabels = frozenset(LOOK_ALIKES)

    @staticmethod
    def relabel(values: Mapping[str, Any], rng: Any) -> Any:
        """The same decay in another channel of its K_S/K_L class (drawn uniformly), or None
        where the channel has no look-alike."""
        members = LOOK_ALIKES.get(int(values[CHANNEL])) if CHANNEL in values else None
        if members is None:
            return None
        old = int(values[CHANNEL])
        others = [c for c in members if c != old]
        new = others[int(rng.integers(len(others)))]
        prefix, new_prefix = f"tau_c{old:02d}", f"tau_c{new:02d}"
        out = {(new_prefix + k[len(prefix):] if k.startswith(prefix) else k): v
               for k, v in values.items()}
        out[CHANNEL] = new
        return out, 0.0

    def swap(self, values: Mapping[str, Any], rng: Any = None) -> Any:
        """Values of the partner channel's trace and the log Jacobian, or None where the
        channel has no partner or the swap has no such decay (below threshold, off the cone,
        a rejected mass draw that the partner would accept)."""
        if CHANNEL not in values or int(values[CHANNEL]) not in PARTNERS:
            return None
        old, new = CHANNELS[int(values[CHANNEL])], CHANNELS[PARTNERS[int(values[CHANNEL])]]
        if old.resonance is not None and not self.resonances:
            return None
        p_tau = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        tau = _four(p_tau, TAU_MASS)
        old_keys, new_keys = (_angle_keys(f"tau_c{c.index:02d}", 1) for c in (old, new))
        n1 = _direction(float(values[old_keys[0]]), float(values[old_keys[1]]))
        out: dict[str, Any] = {CHANNEL: new.index}
        log_j = 0.0
        if old.resonance is None:
            m_h, m_new = float(old.masses[0]), float(new.masses[0])
            p_star = two_body_momentum(TAU_MASS, m_h, 0.0)
            hadron = boost(np.concatenate([[math.hypot(p_star, m_h)], p_star * n1]), tau,
                           TAU_MASS)[0]
            swapped = _reweigh(hadron, m_new)
            if swapped is None:
                return None
            x, x_new = hadron, swapped
            m_x, m_x_new = m_h, m_new
            log_j += math.log(p_star) - math.log(two_body_momentum(TAU_MASS, m_new, 0.0))
        else:
            a, b = _Resonance(old), _Resonance(new)
            draws = sorted(int(k[len(a.mass_key):]) for k in values if k.startswith(a.mass_key))
            accepted = draws[-1]
            m = a.mass(float(values[a.mass_key + str(accepted)]))
            p_star = two_body_momentum(TAU_MASS, m, 0.0)
            x = boost(np.concatenate([[math.hypot(p_star, m)], p_star * n1]), tau, TAU_MASS)[0]
            q_star = two_body_momentum(m, *a.daughters)
            n2 = _direction(*(float(values[k]) for k in a.decay_keys))
            hadron = boost(np.concatenate([[math.hypot(q_star, a.daughters[0])], q_star * n2]),
                           x, m)[0]
            pi0 = x - hadron
            swapped = _reweigh(hadron, b.daughters[0])
            if swapped is None:
                return None
            x_new = swapped + pi0
            m_new2 = x_new[0] ** 2 - float(x_new[1:] @ x_new[1:])
            m_new = math.sqrt(m_new2) if m_new2 > 0.0 else 0.0
            if not b.lo < m_new < TAU_MASS:
                return None
            q_new = two_body_momentum(m_new, *b.daughters)
            rest = boost(swapped, np.concatenate([[x_new[0]], -x_new[1:]]), m_new)[0][1:]
            if abs(float(np.linalg.norm(rest)) - q_new) > 1e-6 * max(q_new, 1.0):
                return None
            out[b.decay_keys[0]], out[b.decay_keys[1]] = _angles(rest / np.linalg.norm(rest))
            # The accepted mass draw, and the accept test's place under the weight.
            level, level_new = a.accept_level(m), b.accept_level(m_new)
            out[b.mass_key + str(accepted)] = _bw_cdf(m_new, b.m0, b.width)
            out[b.accept_key + str(accepted)] = float(values[a.accept_key + str(accepted)]) * (
                level_new / level)
            # Rejected mass draws keep their place in the range and their accept test.
            scale = (b.c_hi - b.c_lo) / (a.c_hi - a.c_lo)
            for i in draws[:-1]:
                c = b.c_lo + (float(values[a.mass_key + str(i)]) - a.c_lo) * scale
                u = float(values[a.accept_key + str(i)])
                if u < b.accept_level(b.mass(c)):
                    return None   # the partner would have accepted this draw
                out[b.mass_key + str(i)], out[b.accept_key + str(i)] = c, u
            log_j += (len(draws) - 1) * math.log(scale) + math.log(level_new / level)
            log_j += (b.log_density(m_new) - a.log_density(m)
                      - math.log(two_body_momentum(TAU_MASS, m_new, 0.0)) + math.log(p_star)
                      - math.log(q_new) + math.log(q_star))
            m_x, m_x_new = m, m_new
        new_tau = _turn_tau(p_tau, x, x_new, m_x_new)
        if new_tau is None:
            return None
        p_star_new = two_body_momentum(TAU_MASS, m_x_new, 0.0)
        rest = boost(x_new, _four(-new_tau, TAU_MASS), TAU_MASS)[0][1:]
        if abs(float(np.linalg.norm(rest)) - p_star_new) > 1e-6 * max(p_star_new, 1.0):
            return None   # no such decay (numerically off the cone)
        out[PX], out[PY], out[PZ] = (float(v) for v in new_tau)
        out[new_keys[0]], out[new_keys[1]] = _angles(rest / np.linalg.norm(rest))
        # |P| enters J; the hadron's step at fixed energy and direction adds |p_h′| / |p_h|.
        log_j += (math.log(np.linalg.norm(x[1:])) - math.log(np.linalg.norm(x_new[1:]))
                  + math.log(np.linalg.norm(swapped[1:])) - math.log(np.linalg.norm(hadron[1:])))
        for key, value in values.items():   # the rest of the trace (the π⁰'s photons) stays
            if not key.startswith(f"tau_c{old.index:02d}") and key not in out:
                out[key] = value
        return out, log_j


class ChannelJump:
    """Jumps as one, drawn uniformly among those that move the trace's channel: a jump drawn
    for a channel it cannot move spends a sweep for nothing. ``jumps`` pairs each jump with the
    channels it moves, a set that the jump maps into itself, so the reverse jump is among the
    new channel's; the odds of the draw enter the ratio as log |A(c)| − log |A(c′)|, A(c) the
    jumps that move channel c."""

    def __init__(self, jumps: Sequence[tuple[Callable[..., Any], Container[int]]]) -> None:
        self.jumps = tuple(jumps)

    def _moving(self, channel: int) -> list[Callable[..., Any]]:
        return [jump for jump, channels in self.jumps if channel in channels]

    def __call__(self, values: Mapping[str, Any], rng: Any) -> Any:
        here = self._moving(int(values[CHANNEL])) if CHANNEL in values else []
        if not here:
            return None
        proposal = here[int(rng.integers(len(here)))](values, rng)
        if proposal is None:
            return None
        new, log_ratio = proposal
        there = self._moving(int(new[CHANNEL]))
        return new, log_ratio + math.log(len(here)) - math.log(len(there))


def _reweigh(p4: np.ndarray, mass: float) -> np.ndarray | None:
    """The four-momentum of a particle of ``mass`` with the energy and direction of ``p4``."""
    if p4[0] <= mass:
        return None
    size = float(np.linalg.norm(p4[1:]))
    return np.concatenate([[p4[0]], p4[1:] * (math.sqrt(p4[0] ** 2 - mass * mass) / size)])


def _turn_tau(p_tau: np.ndarray, x: np.ndarray, x_new: np.ndarray,
              m_new: float) -> np.ndarray | None:
    """The tau momentum with the same |p| and azimuth about X's direction as ``p_tau`` has
    about ``x``, at the angle to ``x_new`` that a massless neutrino demands."""
    size = float(np.linalg.norm(p_tau))
    axis = x[1:] / np.linalg.norm(x[1:])
    e1, e2 = _frame(axis)
    alpha = math.atan2(float(p_tau @ e2), float(p_tau @ e1))
    p_x = float(np.linalg.norm(x_new[1:]))
    axis_new = x_new[1:] / p_x
    e_tau = math.hypot(size, TAU_MASS)
    cos = (2.0 * e_tau * x_new[0] - TAU_MASS ** 2 - m_new ** 2) / (2.0 * size * p_x)
    if not -1.0 < cos < 1.0:
        return None
    sin = math.sqrt(1.0 - cos * cos)
    f1, f2 = _frame(axis_new)
    return size * (cos * axis_new + sin * (math.cos(alpha) * f1 + math.sin(alpha) * f2))


__all__ = ["ChannelJump", "ChannelJumps", "LOOK_ALIKES", "PARTNERS"]
