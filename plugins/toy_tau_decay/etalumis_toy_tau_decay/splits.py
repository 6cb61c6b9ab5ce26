"""Split, merge and swap: jumps between decay channels that differ by one π⁰ or by one π⁺ π⁻
pair, or in the species of their hadrons.

Where the posterior's best explanations of an event name the wrong channel with certainty, they
keep the energy that photons and hadrons carry and get the number of particles wrong: two π⁰
read as one or one as two, three charged pions as one or one as three. No move of a fixed
channel reaches the other explanation, and a prior redraw of the channel draws the new
channel's kinematics far from the data. One jump does either, to a neighbouring channel drawn
uniformly: a *split* turns one π⁰ into two, or one π⁻ into π⁻ π⁺ π⁻, and a *merge* is its
reverse. Others get the species wrong: the calorimeter sees a hadron's energy and direction,
not whether it is a pion, a kaon or a K_L (τ → π⁺ π⁻ π⁻ ν against π⁻ K_S K_L ν or K⁻ π⁺ π⁻ ν).
A *swap* moves to a channel with as many hadrons and as many π⁰ but other hadron species.

The map works in the lab, so that the particles the jump does not touch keep the momenta the
calorimeter has already matched. The split particle's momentum P is shared out, P → (P − Σu, u…),
the new momenta u drawn about one of a π⁰'s photons or about a third of a π⁻'s momentum (Gaussians
SPREAD or SHARE_SPREAD of the centre's size wide along it and TILT across it, so the new particle
points where the old one's showers are); a merge adds the group's momenta. The visible system V
(every particle but the neutrino) keeps its 3-momentum and only its energy and mass change; the tau
keeps |p_τ| and its azimuth α about V and turns to keep the neutrino massless (as the pion–kaon swap
does); where V's new mass leaves no such tau the jump is refused. The photons of the π⁰ a jump makes
(a split's two, a merge's one) get decay angles drawn where the observed deposits are that the rest
of the trace leaves unexplained (:mod:`.placing`); the angles of the π⁰ it unmakes are what its
reverse would draw. A swap keeps what the calorimeter sees: each of the new channel's hadrons takes
the lab energy and direction of an old one, in an order drawn uniformly (among all orders, so the
reverse draws the inverse order as likely), the π⁰ keep their momenta and their photons' angles, and
the tau turns as in the pion–kaon swap (:mod:`.jumps`). Traces whose accept/reject loops took more
than one try are left alone, in both directions: the move's domain is closed under it.

The ratio. Against d³p_τ dΦ_n (flat phase space of the tau's decay), the draws have density
D · ∏ L, L = w / B each loop's accept level (its uniform is carried as its place u / L;
places of loops only the new channel has are drawn uniformly):

* raw GENBOD (sorted uniforms r, directions in successive rest frames) has dΦ_n = w 2⁻ⁿ / M
  ∏ dM_i dΩ_i with w = ∏ p*_i and dM_i = T dr_i (T = M − Σ m), and the k = n − 2 uniforms are
  drawn unsorted: D = k! 2ⁿ M / (w T^k); a two-body decay is n = 2 (D = 4M / p*);
* through a resonance (τ → R ν, R → its daughters), dΦ_n = dΦ₂(M; m, 0) dΦ_R(m) dm², so
  D = f(m) D_R 2M / (p* m), f the Breit–Wigner quantile's density dc/dm.

With the neutrino integrated out, d³p_τ dΦ_n ∝ (|p_τ| d|p_τ| dα / |V|) ∏ d³p_i / 2E_i over the
visible particles; the tau's factor is the same on both sides (|V| is kept), and the split's map of
lab momenta (P, u) → (P − Σu, u) has Jacobian 1, so dΦ_few d^A u / dΦ_many = ∏′ 2E′ / 2E over the
split particle and the group it becomes. The jump's log-ratio is the log of D′ ∏ L′ / (D ∏ L) times
these, minus the log density of the drawn momenta and photon angles, plus that of the angles the
reverse would draw (a charged split's two π⁻ are alike, so its density is the mean over which one
was drawn), plus the log-ratio of the two channels' numbers of neighbours. A swap draws nothing; at
fixed energy and direction d³p′ / d³p = |p′| / |p| for each hadron, and the tau's 1 / |V| gives
|V| / |V′|. The tests check the map's Jacobian against finite differences, that each jump's reverse
undoes it with the opposite ratio, and that the jump alone leaves the prior invariant.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from . import physics
from .decay import (ReplaySampler, _bw_cdf, _resonance_mass_weight, boost, decay_tau,
                    phase_space_bound, resonance_bound, two_body_momentum)
from .jumps import _Resonance, _reweigh, _turn_tau
from .calorimeter import Calorimeter
from .moves import CHANNEL, PX, PY, PZ, _angle_keys, _angles, _four
from .placing import PhotonPlacer, photons
from .physics import CHANNELS, PI0, PIM, PIP, TAU_MASS

PI0_DECAY = "pi0_decay"
# The new momenta (lab): a Gaussian about one of the old π⁰'s photons for a new π⁰, about a
# third of the old π⁻'s momentum for a charged split's π⁺ and second π⁻, SPREAD (π⁰) or
# SHARE_SPREAD (charged) of that momentum wide along it, TILT across it, plus FLOOR (GeV).
SPREAD, SHARE_SPREAD, TILT, FLOOR = 0.3, 0.2, 0.03, 0.02
SHARE = 1.0 / 3.0


def _kind(few: physics.Channel, many: physics.Channel) -> str | None:
    """How ``many``'s primaries come from ``few``'s: a π⁰ split in two (``"pi0"``), a π⁻ split
    into π⁻ π⁺ π⁻ (``"charged"``), or neither. The visible system keeps its mass, so one
    visible particle (τ → π⁻ ν) has nothing to split into."""
    if len(few.daughters) < 3:
        return None
    counts = Counter(many.daughters)
    counts.subtract(few.daughters)
    extra = {pdg: n for pdg, n in counts.items() if n}
    if extra == {PI0: 1} and PI0 in few.daughters:
        return "pi0"
    if extra == {PIP: 1, PIM: 1} and PIM in few.daughters:
        return "charged"
    return None


def _species_partners(a: physics.Channel, b: physics.Channel) -> bool:
    """Whether ``a`` and ``b`` have as many hadrons (more than one visible particle in all) and
    as many π⁰, and differ in the hadrons' species: the calorimeter sees a hadron's energy,
    not its species."""
    return (a.index != b.index and len(a.daughters) == len(b.daughters) > 2
            and len(_hadrons(a)) == len(_hadrons(b))
            and a.daughters.count(PI0) == b.daughters.count(PI0))


@lru_cache(maxsize=None)
def neighbours(resonances: bool = True) -> dict[int, tuple[int, ...]]:
    """Each channel's channels with one π⁰ or one π⁺ π⁻ pair more or less and the same other
    particles (the channel with fewer has the particle to split), or with as many hadrons of
    other species and as many π⁰ (hadronic, one neutrino, no η: the channels whose primaries
    the jump can read back)."""
    usable = [c for c in CHANNELS if not c.leptonic and physics.ETA not in c.daughters]
    out: dict[int, tuple[int, ...]] = {}
    for c in usable:
        near = tuple(d.index for d in usable
                     if _kind(c, d) is not None or _kind(d, c) is not None
                     or _species_partners(c, d))
        if near:
            out[c.index] = near
    return out


class _Layout:
    """How one channel's decay draws its primaries (the particles before π⁰ decays), read back
    from the primaries' momenta: the draws and their density J against y (see the module)."""

    def __init__(self, index: int, resonances: bool) -> None:
        self.channel = CHANNELS[index]
        self.prefix = f"tau_c{index:02d}"
        self.resonance = (_Resonance(self.channel)
                          if resonances and self.channel.resonance is not None else None)
        if self.resonance is not None:
            r = self.channel.resonance
            self.inner = len(r.daughters)
            self.inner_address = f"{self.prefix}_{physics.particle_name(r.pdg, True)[:-1]}"
        self.masses = tuple(float(m) for m in (physics.mass(p) for p in self.channel.daughters))
        self.loops = len(self._accept_keys())

    def primaries(self, values: Mapping[str, Any]) -> np.ndarray | None:
        """The primaries' four-momenta (lab), in the decay's order, neutrino last; None where a
        loop tried more than once."""
        if any(k.startswith(self.prefix) and "_accept__Uniform__2" in k for k in values):
            return None
        p = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        try:
            event = decay_tau(_four(p, TAU_MASS), self.channel, ReplaySampler(values),
                              self.resonance is not None, decay_pi0=False, decay_eta=False)
        except KeyError:
            return None   # a loop that would try again
        return np.array([part.p4 for part in event.final_state])

    def places(self, values: Mapping[str, Any], primaries: np.ndarray) -> list[float]:
        """Each loop's accept uniform over its accept level."""
        return [float(values[key]) / level
                for key, level in zip(self._accept_keys(), self._levels(primaries))]

    def _accept_keys(self) -> list[str]:
        if self.resonance is None:   # a two-body decay has no loop
            return [f"{self.prefix}_genbod_accept__Uniform__1"] if len(self.masses) > 2 else []
        keys = [self.resonance.accept_key + "1"]
        if self.inner > 2:
            keys.append(f"{self.inner_address}_genbod_accept__Uniform__1")
        return keys

    def _levels(self, primaries: np.ndarray) -> list[float]:
        if self.resonance is None:
            return [_genbod_level(primaries, self.masses)] if len(self.masses) > 2 else []
        m = _mass(primaries[:self.inner].sum(axis=0))
        levels = [min(1.0, _resonance_mass_weight(m, TAU_MASS, self.resonance.daughters)
                      / resonance_bound(TAU_MASS, self.resonance.daughters))]
        if self.inner > 2:
            levels.append(_genbod_level(primaries[:self.inner], self.masses[:self.inner]))
        return levels

    def log_density(self, primaries: np.ndarray) -> float:
        """log of D · ∏ L: the density of the draws against d³p_τ dΦ_n (see the module)."""
        log_j = sum(math.log(level) for level in self._levels(primaries))
        if self.resonance is None:
            return log_j + _log_genbod_density(primaries, self.masses)
        inner = primaries[:self.inner]
        m = _mass(inner.sum(axis=0))
        return (log_j + self.resonance.log_density(m) + math.log(2.0 * TAU_MASS / m)
                - math.log(two_body_momentum(TAU_MASS, m, 0.0))
                + _log_genbod_density(inner, self.masses[:self.inner]))

    def draws(self, p_tau: np.ndarray, primaries: np.ndarray, places: list[float],
              rng: np.random.Generator) -> dict[str, Any] | None:
        """The decay's draws that give ``primaries`` (the mass uniforms in a random order);
        None where no draw of this channel does."""
        out: dict[str, Any] = {}
        tau = _four(p_tau, TAU_MASS)
        levels = self._levels(primaries)
        for key, place, level in zip(self._accept_keys(), places, levels):
            out[key] = place * level
        if self.resonance is None:
            return _genbod_draws(tau, TAU_MASS, primaries, self.masses, self.prefix, rng, out)
        a = self.resonance
        inner = primaries[:self.inner]
        system = inner.sum(axis=0)
        m = _mass(system)
        if not a.lo < m < TAU_MASS:
            return None
        out[a.mass_key + "1"] = _bw_cdf(m, a.m0, a.width)
        rest = boost(system, _reverse(tau), TAU_MASS)[0][1:]
        out.update(zip(_angle_keys(self.prefix, 1), _angles(rest / np.linalg.norm(rest))))
        if self.inner == 2:
            rest = boost(inner[0], _reverse(system), m)[0][1:]
            out.update(zip(a.decay_keys, _angles(rest / np.linalg.norm(rest))))
            return out
        return _genbod_draws(system, m, inner, self.masses[:self.inner], self.inner_address,
                             rng, out)


def _mass(p4: np.ndarray) -> float:
    m2 = float(p4[0] ** 2 - p4[1:] @ p4[1:])
    return math.sqrt(m2) if m2 > 0.0 else 0.0


def _reverse(p4: np.ndarray) -> np.ndarray:
    return np.concatenate([[p4[0]], -p4[1:]])


def _subsystem_masses(particles: np.ndarray) -> list[float]:
    """Invariant masses of (0), (0, 1), …, all: GENBOD's chain."""
    return [_mass(s) for s in np.cumsum(particles, axis=0)]


def _genbod_weight(particles: np.ndarray, masses: tuple[float, ...]) -> float:
    inv = _subsystem_masses(particles)
    inv[0] = masses[0]
    w = 1.0
    for i in range(1, len(masses)):
        w *= two_body_momentum(inv[i], inv[i - 1], masses[i])
    return w


def _genbod_level(particles: np.ndarray, masses: tuple[float, ...]) -> float:
    parent = _mass(particles.sum(axis=0))
    return min(1.0, _genbod_weight(particles, masses) / phase_space_bound(parent, masses))


def _log_genbod_density(particles: np.ndarray, masses: tuple[float, ...]) -> float:
    """log D of a raw GENBOD (or two-body) decay into ``particles``: k! 2ⁿ M / (w T^k)."""
    n, k = len(masses), len(masses) - 2
    parent = _mass(particles.sum(axis=0))
    kinetic = parent - sum(masses)
    return (math.lgamma(k + 1) + n * math.log(2.0) + math.log(parent)
            - math.log(_genbod_weight(particles, masses)) - k * math.log(kinetic))


def _genbod_draws(parent: np.ndarray, parent_mass: float, particles: np.ndarray,
                  masses: tuple[float, ...], address: str, rng: np.random.Generator,
                  out: dict[str, Any]) -> dict[str, Any] | None:
    """The draws of :func:`decay.n_body_decay` (or a two-body decay) that give ``particles``:
    the chain undone from the outermost subsystem inwards, each in its own rest frame reached
    by the boosts the decay made."""
    n = len(masses)
    current = boost(particles, _reverse(parent), parent_mass)
    if n == 2:
        out.update(zip(_angle_keys(address, 1), _angles(current[0, 1:]
                                                         / np.linalg.norm(current[0, 1:]))))
        return out
    inv = _subsystem_masses(particles)
    kinetic = parent_mass - sum(masses)
    cum = np.cumsum(masses)
    r = [(inv[i] - cum[i]) / kinetic for i in range(1, n - 1)]
    if not all(0.0 < x < 1.0 for x in r):
        return None
    for i, x in enumerate(rng.permutation(r), start=1):
        out[f"{address}_genbod_mass__Uniform__{i}"] = float(x)
    directions = {}
    for i in range(n - 2, 0, -1):
        outer = current[i + 1, 1:]
        directions[i + 1] = -outer / np.linalg.norm(outer)
        sub = current[: i + 1].sum(axis=0)
        current = boost(current[: i + 1], _reverse(sub), inv[i])
    directions[1] = current[0, 1:] / np.linalg.norm(current[0, 1:])
    for i, n_i in directions.items():
        out.update(zip(_angle_keys(f"{address}_genbod_dir", i), _angles(n_i)))
    return out


def _draw_near(centre: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """A 3-momentum about ``centre``: Normal, ``spread`` |centre| + FLOOR wide along it and
    TILT |centre| + FLOOR across it (see :func:`_log_near`)."""
    size = float(np.linalg.norm(centre))
    along, across = spread * size + FLOOR, TILT * size + FLOOR
    axis = centre / size
    z = rng.normal(size=3)
    return centre + across * z + (along - across) * float(z @ axis) * axis


def _log_near(u: np.ndarray, centre: np.ndarray, spread: float) -> float:
    """log density of :func:`_draw_near`'s draw ``u`` about ``centre``."""
    size = float(np.linalg.norm(centre))
    along, across = spread * size + FLOOR, TILT * size + FLOOR
    d = u - centre
    d_along = float(d @ centre) / size
    d_across2 = max(float(d @ d) - d_along * d_along, 0.0)
    return (-0.5 * d_along * d_along / (along * along) - 0.5 * d_across2 / (across * across)
            - math.log(along) - 2.0 * math.log(across) - 1.5 * math.log(2.0 * math.pi))


def _log_near_photons(k2: np.ndarray, photons: np.ndarray) -> float:
    """log density of the new π⁰'s 3-momentum: about either of the old π⁰'s ``photons``
    (3-momenta), equally."""
    return float(np.logaddexp(*(_log_near(k2, g, SPREAD) for g in photons)) - math.log(2.0))


def _log_charged(plus: np.ndarray, first: np.ndarray, second: np.ndarray,
                 k: np.ndarray) -> float:
    """log density of a charged split's new momenta: the π⁺'s and one π⁻'s drawn about a
    third of ``k`` (the other π⁻ takes the rest), either π⁻ equally: the two ways give the
    same trace."""
    centre = SHARE * k
    return (_log_near(plus, centre, SHARE_SPREAD)
            + float(np.logaddexp(_log_near(first, centre, SHARE_SPREAD),
                                 _log_near(second, centre, SHARE_SPREAD))) - math.log(2.0))


class SplitMerge:
    """The jump, for :meth:`TauDecaySimulator.jumps`."""

    def __init__(self, resonances: bool = True, calorimeter: Calorimeter | None = None,
                 background: float = 1e-4) -> None:
        self.resonances = bool(resonances)
        self.neighbours = neighbours(self.resonances)
        self.layouts = {i: _Layout(i, self.resonances) for i in self.neighbours}
        self.placer = PhotonPlacer(Calorimeter() if calorimeter is None else calorimeter,
                                   background)
        self.observed: np.ndarray | None = None
        self._counts: Any = None

    def observe(self, counts: np.ndarray | None) -> None:
        """The event's observed deposit counts, where the π⁰'s photons are placed (None, or
        counts not on the calorimeter's grid: the photon angles are drawn from their prior)."""
        if counts is not self._counts:   # the engine passes the same array on every run
            self._counts = counts
            on_grid = np.shape(counts) == self.placer.calorimeter.bins
            self.observed = self.placer.project(counts) if on_grid else None

    def __call__(self, values: Mapping[str, Any], rng: np.random.Generator) -> Any:
        """Values of a neighbouring channel's trace and the log-ratio, or None where the
        channel has no neighbour, a loop tried more than once, or the new decay is impossible."""
        read = self._read(values)
        if read is None:
            return None
        layout, primaries, places, pi0 = read
        old = layout.channel.index
        near = self.neighbours[old]
        new = near[int(rng.integers(len(near)))]
        split, kind, spots = _places(old, new)
        choice = {"new": new, "fresh": [float(rng.random())
                            for _ in range(self.layouts[new].loops - layout.loops)],
                  **{name: [int(x) for x in rng.choice(len(s), 2, replace=False)]
                     if name == "pair" else [int(x) for x in rng.permutation(len(s))]
                     if name == "order" else int(rng.integers(len(s)))
                     for name, s in spots.items()}}
        if split:   # the new momenta (lab)
            j = spots["single"][choice["single"]]
            if kind == "pi0":
                photon = photons(primaries[j], *pi0[j])[0][int(rng.integers(2)), 1:]
                choice["momentum"] = list(_draw_near(photon, SPREAD, rng))
            else:
                choice["momentum"] = [float(x) for _ in range(2) for x in
                                      _draw_near(SHARE * primaries[j, 1:], SHARE_SPREAD, rng)]
        done = self.apply(values, choice, rng, read=read)
        return None if done is None else done[:2]

    def _read(self, values: Mapping[str, Any]) -> tuple | None:
        if CHANNEL not in values or int(values[CHANNEL]) not in self.neighbours:
            return None
        prefix = f"tau_c{int(values[CHANNEL]):02d}"
        if any(not (k.startswith(prefix) or k.startswith(PI0_DECAY) or k in (CHANNEL, PX, PY, PZ))
               for k in values):
            return None   # draws the jump cannot carry (the deposits of other likelihoods)
        layout = self.layouts[int(values[CHANNEL])]
        primaries = layout.primaries(values)
        if primaries is None:
            return None
        places = layout.places(values, primaries)
        if not all(0.0 <= v < 1.0 for v in places):
            return None
        return layout, primaries, places, _pi0_angles(values, layout.channel)

    def apply(self, values: Mapping[str, Any], choice: Mapping[str, Any],
              rng: np.random.Generator, read: tuple | None = None) -> tuple | None:
        """The jump for drawn ``choice``: the new channel (``new``); where, among the
        primaries of the channel with more, the split particle's products go (``pair``: two
        of the π⁰ or of the π⁻; ``plus``: one of the π⁺) and which one of the channel with
        fewer splits or takes the merged particle (``single``); the places of the new loops
        (``fresh``); for a split, the new lab momenta (``momentum``: the second π⁰'s, or the
        π⁺'s and the second π⁻'s) and the new π⁰'s photon angles (``angles``). Gives the new
        values, the log-ratio, the log-Jacobian of the map alone (``rng`` orders the mass
        uniforms) and the choice that undoes the jump. ``read`` is the trace read back from
        ``values``, where the caller has it already."""
        read = self._read(values) if read is None else read
        if read is None:
            return None
        layout, primaries, places, pi0 = read
        old, new = layout.channel.index, int(choice["new"])
        new_layout = self.layouts[new]
        split, kind, spots = _places(old, new)
        if kind == "species":
            return self._swap(values, choice, rng, read)
        a, b = (spots["pair"][i] for i in choice["pair"])
        j = spots["single"][choice["single"]]
        group = [a, spots["plus"][choice["plus"]], b] if kind == "charged" else [a, b]
        source = _match(layout.channel.daughters, new_layout.channel.daughters,
                        skip_old={j} if split else set(group),
                        skip_new=set(group) if split else {j})
        # In the lab, every other particle stays; the split particle's momentum is shared out
        # (or the group's added up), so the visible system V keeps its 3-momentum and only its
        # energy changes; the tau turns to keep the neutrino massless.
        masses = new_layout.masses
        visible = np.empty((len(masses) - 1, 4))
        for i, k in source.items():
            if i < len(visible):
                visible[i] = primaries[k]
        if split:
            drawn = np.reshape(np.asarray(choice["momentum"], dtype=float), (-1, 3))
            for i, p in zip(group, [primaries[j, 1:] - drawn.sum(axis=0), *drawn]):
                visible[i] = _four(p, masses[i])
        else:
            visible[j] = _four(primaries[group, 1:].sum(axis=0), masses[j])
        system, new_system = primaries[:-1].sum(axis=0), visible.sum(axis=0)
        m_new = _mass(new_system)
        p_tau = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        new_tau = _turn_tau(p_tau, system, new_system, m_new) if m_new < TAU_MASS else None
        if new_tau is None:
            return None
        new_primaries = np.vstack([visible, _four(new_tau, TAU_MASS) - new_system])
        few_primaries, many_primaries = ((primaries, new_primaries) if split
                                         else (new_primaries, primaries))
        # d³p_τ dΦ_n = (|p_τ| d|p_τ| dα / 2|V|) ∏ d³p / 2E over the visible particles, and the
        # split's map of lab momenta (P, u) → (P − Σu, u) has Jacobian 1.
        log_phase = (math.log(2.0 * few_primaries[j, 0])
                     - float(np.sum(np.log(2.0 * many_primaries[group, 0]))))
        # The π⁰ the new channel shares with the old keep their photons' angles.
        angles = {i: pi0[k] for i, k in source.items() if k in pi0}
        if kind == "pi0":
            old_other = {i: v for i, v in pi0.items() if i not in ({j} if split else {a, b})}
            few_other, many_other = (old_other, angles) if split else (angles, old_other)
            channels = ((layout.channel, new_layout.channel) if split
                        else (new_layout.channel, layout.channel))
            placed, log_placed = self._place((few_primaries, many_primaries),
                                             (few_other, many_other), channels, (j, a, b),
                                             split, pi0, choice.get("angles"), rng)
            angles.update(placed)
            near = photons(few_primaries[j], *(pi0[j] if split else placed[j]))[0][:, 1:]
            log_aux = _log_near_photons(many_primaries[b, 1:], near) + log_placed
        else:
            log_aux = _log_charged(*many_primaries[group][[1, 0, 2], 1:], few_primaries[j, 1:])
        out = _new_values(new_layout, new_tau, new_primaries,
                          (places + list(choice["fresh"]))[:new_layout.loops], angles, rng)
        if out is None:
            return None
        sign = 1.0 if split else -1.0
        log_map = (new_layout.log_density(new_primaries) - layout.log_density(primaries)
                   + sign * log_phase)
        log_ratio = (log_map - sign * log_aux + math.log(len(self.neighbours[old]))
                     - math.log(len(self.neighbours[new])))
        reverse = {"new": old, "pair": choice["pair"], "single": choice["single"],
                   "plus": choice.get("plus"), "fresh": places[new_layout.loops:]}
        if kind == "pi0":
            reverse["angles"] = pi0[j] if split else (*pi0[a], *pi0[b])
        if not split:
            reverse["momentum"] = list(primaries[group[1:], 1:].ravel())
        return out, log_ratio, log_map, reverse

    def _place(self, primaries: tuple[np.ndarray, np.ndarray],
               others: tuple[Mapping[int, tuple], Mapping[int, tuple]],
               channels: tuple[physics.Channel, physics.Channel], spots: tuple[int, int, int],
               split: bool, pi0: Mapping[int, tuple], given: Sequence[float] | None,
               rng: np.random.Generator) -> tuple[dict[int, tuple], float]:
        """The photons' angles of the new π⁰ (a split's two at places a and b among the many's
        primaries, a merge's one at j among the few's), drawn by the placer unless ``given``,
        and the log of the split's density of the pair's angles over the merge's of the
        single's (the pair's angles are drawn in turn, the second against the first's
        photons too). ``primaries``, ``others`` (the angles of every other π⁰) and
        ``channels`` are the few's and the many's."""
        j, a, b = spots
        few, many = primaries
        placer, observed = self.placer, self.observed
        rest_few = rest_many = rest_second = None
        if observed is not None:
            rest_few, rest_many = (
                placer.rest([(pdg, p4) for pdg, p4 in zip(c.daughters[:-1], p) if pdg != PI0],
                            [(p[i], v) for i, v in other.items()])
                for p, other, c in zip(primaries, others, channels))

        def second(first: tuple) -> np.ndarray | None:
            return None if observed is None else rest_many + placer.shower(many[a], first)
        if split:
            single = pi0[j]
            if given is None:
                first, log_first = placer.draw(many[a], rest_many, observed, rng)
                pair, log_pair = placer.draw(many[b], second(first), observed, rng)
            else:
                first, pair = tuple(given[:2]), tuple(given[2:])
                log_first = placer.log_density(first, many[a], rest_many, observed)
                log_pair = placer.log_density(pair, many[b], second(first), observed)
            log_single = placer.log_density(single, few[j], rest_few, observed)
            placed = {a: first, b: pair}
        else:
            first, pair = pi0[a], pi0[b]
            if given is None:
                single, log_single = placer.draw(few[j], rest_few, observed, rng)
            else:
                single = tuple(given)
                log_single = placer.log_density(single, few[j], rest_few, observed)
            log_first = placer.log_density(first, many[a], rest_many, observed)
            log_pair = placer.log_density(pair, many[b], second(first), observed)
            placed = {j: single}
        return placed, log_first + log_pair - log_single

    def _swap(self, values: Mapping[str, Any], choice: Mapping[str, Any],
              rng: np.random.Generator, read: tuple) -> tuple | None:
        """:meth:`apply` for a channel of other hadron species (``order``: which old hadron
        each new one takes the energy and direction of)."""
        layout, primaries, places, pi0 = read
        old, new = layout.channel.index, int(choice["new"])
        new_layout = self.layouts[new]
        before, after = _hadrons(layout.channel), _hadrons(new_layout.channel)
        source = _match(layout.channel.daughters, new_layout.channel.daughters,
                        skip_old=set(before), skip_new=set(after))
        source.update({after[i]: before[k] for i, k in enumerate(choice["order"])})
        visible = np.empty((len(new_layout.masses) - 1, 4))
        log_map = 0.0
        for i in range(len(visible)):
            p4 = _reweigh(primaries[source[i]], new_layout.masses[i])
            if p4 is None:
                return None   # too little energy for the heavier hadron
            visible[i] = p4
            log_map += (math.log(np.linalg.norm(p4[1:]))
                        - math.log(np.linalg.norm(primaries[source[i], 1:])))
        system, new_system = primaries[:-1].sum(axis=0), visible.sum(axis=0)
        p_tau = np.array([values[PX], values[PY], values[PZ]], dtype=float)
        new_tau = _turn_tau(p_tau, system, new_system, _mass(new_system))
        if new_tau is None:
            return None
        new_primaries = np.vstack([visible, _four(new_tau, TAU_MASS) - new_system])
        angles = {i: pi0[k] for i, k in source.items() if k in pi0}
        out = _new_values(new_layout, new_tau, new_primaries,
                          (places + list(choice["fresh"]))[:new_layout.loops], angles, rng)
        if out is None:
            return None
        log_map += (new_layout.log_density(new_primaries) - layout.log_density(primaries)
                    + math.log(np.linalg.norm(system[1:]))
                    - math.log(np.linalg.norm(new_system[1:])))
        log_ratio = (log_map + math.log(len(self.neighbours[old]))
                     - math.log(len(self.neighbours[new])))
        reverse = {"new": old, "order": [int(i) for i in np.argsort(choice["order"])],
                   "fresh": places[new_layout.loops:]}
        return out, log_ratio, log_map, reverse


def _new_values(layout: _Layout, p_tau: np.ndarray, primaries: np.ndarray, places: list[float],
                angles: Mapping[int, tuple], rng: np.random.Generator) -> dict[str, Any] | None:
    """The values of ``layout``'s channel that give ``primaries`` (the π⁰ at each place with
    the photon ``angles`` given for it); None where no decay of the channel does."""
    draws = layout.draws(p_tau, primaries, places, rng)
    if draws is None:
        return None
    out: dict[str, Any] = {CHANNEL: layout.channel.index, PX: float(p_tau[0]),
                           PY: float(p_tau[1]), PZ: float(p_tau[2]), **draws}
    for t, spot in enumerate(i for i, p in enumerate(layout.channel.daughters) if p == PI0):
        out.update(zip(_angle_keys(PI0_DECAY, t + 1), angles[spot]))
    replayed = layout.primaries(out)
    if replayed is None or not np.allclose(replayed, primaries, rtol=1e-7, atol=1e-7):
        return None   # no such decay (numerically off the solution)
    return out


def _places(old: int, new: int) -> tuple[bool, str, dict[str, list[int]]]:
    """Whether ``old`` → ``new`` splits, the kind, and the places among the primaries that
    the choice draws from: ``pair`` (the split particle's kind in the channel with more),
    ``plus`` (its π⁺, a charged split's), ``single`` (the split particle's kind in the one with
    fewer); for channels of other hadron species, ``order`` (the new channel's hadrons, which
    take the old ones' momenta in an order drawn)."""
    if _species_partners(CHANNELS[old], CHANNELS[new]):
        return False, "species", {"order": _hadrons(CHANNELS[new])}
    split = len(CHANNELS[new].daughters) > len(CHANNELS[old].daughters)
    few, many = (CHANNELS[old], CHANNELS[new]) if split else (CHANNELS[new], CHANNELS[old])
    kind = _kind(few, many)
    species = PI0 if kind == "pi0" else PIM
    at = lambda c, pdg: [i for i, p in enumerate(c.daughters) if p == pdg]  # noqa: E731
    spots = {"pair": at(many, species), "single": at(few, species)}
    if kind == "charged":
        spots["plus"] = at(many, PIP)
    return split, kind, spots


def _hadrons(channel: physics.Channel) -> list[int]:
    """The places of the channel's primaries that shower as hadrons (all but π⁰ and ν)."""
    return [i for i, p in enumerate(channel.daughters) if p != PI0 and physics.is_hadron(p)]


def _pi0_angles(values: Mapping[str, Any], channel: physics.Channel) -> dict[int, tuple]:
    """Each π⁰ primary's decay angles, by its place among the primaries."""
    spots = [i for i, p in enumerate(channel.daughters) if p == PI0]
    return {spot: tuple(float(values[k]) for k in _angle_keys(PI0_DECAY, t))
            for t, spot in enumerate(spots, start=1)}


def _match(old: tuple, new: tuple, skip_old: set, skip_new: set) -> dict[int, int]:
    """Places in ``new`` → places in ``old`` of the same particle, in order, the skipped left
    out."""
    queues: dict[int, list[int]] = {}
    for i, pdg in enumerate(old):
        if i not in skip_old:
            queues.setdefault(pdg, []).append(i)
    return {i: queues[pdg].pop(0) for i, pdg in enumerate(new) if i not in skip_new}


__all__ = ["SplitMerge", "neighbours"]
