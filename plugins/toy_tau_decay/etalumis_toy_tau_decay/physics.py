"""Particle data and the table of the 38 tau-lepton decay channels.

The channel table follows the Sherpa HADRONS++ tau decay table (SHERPA-DEC) in its order, so
channel indices (0-based here) match the branching-ratio figure of the Etalumis study. Products
exclude the tau neutrino in the published table; here every channel lists it explicitly so that
the kinematics can conserve four-momentum.

Masses and widths are PDG values in GeV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# PDG Monte Carlo particle numbers used by the simulator.
ELECTRON = 11
NU_E = 12
MUON = 13
NU_MU = 14
TAU = 15
NU_TAU = 16
PHOTON = 22
PI0 = 111
PI_PLUS = 211
K_PLUS = 321
K_LONG = 130
K_SHORT = 310
ETA = 221
RHO_PLUS = 213
K_STAR_PLUS = 323
A1_PLUS = 20213


@dataclass(frozen=True)
class ParticleInfo:
    """Static properties of a particle species (for the particle, not the antiparticle)."""

    name: str          # unicode label of the particle (PDG id > 0)
    ascii: str         # ASCII label of the particle
    anti_name: str     # unicode label of the antiparticle (PDG id < 0)
    anti_ascii: str
    mass: float        # GeV
    charge: int        # of the particle with positive PDG id
    width: float = 0.0  # GeV, for resonances


_PARTICLES: dict[int, ParticleInfo] = {
    ELECTRON: ParticleInfo("e⁻", "e-", "e⁺", "e+", 0.51099895e-3, -1),
    NU_E: ParticleInfo("ν_e", "nu_e", "ν̄_e", "nu_e~", 0.0, 0),
    MUON: ParticleInfo("μ⁻", "mu-", "μ⁺", "mu+", 0.1056583755, -1),
    NU_MU: ParticleInfo("ν_μ", "nu_mu", "ν̄_μ", "nu_mu~", 0.0, 0),
    TAU: ParticleInfo("τ⁻", "tau-", "τ⁺", "tau+", 1.77686, -1),
    NU_TAU: ParticleInfo("ν_τ", "nu_tau", "ν̄_τ", "nu_tau~", 0.0, 0),
    PHOTON: ParticleInfo("γ", "gamma", "γ", "gamma", 0.0, 0),
    PI0: ParticleInfo("π⁰", "pi0", "π⁰", "pi0", 0.1349768, 0),
    PI_PLUS: ParticleInfo("π⁺", "pi+", "π⁻", "pi-", 0.13957039, 1),
    K_PLUS: ParticleInfo("K⁺", "K+", "K⁻", "K-", 0.493677, 1),
    K_LONG: ParticleInfo("K_L", "K_L", "K_L", "K_L", 0.497611, 0),
    K_SHORT: ParticleInfo("K_S", "K_S", "K_S", "K_S", 0.497611, 0),
    ETA: ParticleInfo("η", "eta", "η", "eta", 0.547862, 0),
    RHO_PLUS: ParticleInfo("ρ⁺", "rho+", "ρ⁻", "rho-", 0.77526, 1, 0.1474),
    K_STAR_PLUS: ParticleInfo("K*⁺", "K*+", "K*⁻", "K*-", 0.89167, 1, 0.0514),
    A1_PLUS: ParticleInfo("a₁⁺", "a1+", "a₁⁻", "a1-", 1.230, 1, 0.420),
}

TAU_MASS = _PARTICLES[TAU].mass

NEUTRINOS = frozenset({NU_E, NU_MU, NU_TAU})
CHARGED_LEPTONS = frozenset({ELECTRON, MUON, TAU})
EM_SHOWERING = frozenset({ELECTRON, PHOTON})
HADRONS = frozenset({PI0, PI_PLUS, K_PLUS, K_LONG, K_SHORT, ETA})


def info(pdg: int) -> ParticleInfo:
    return _PARTICLES[abs(pdg)]


def mass(pdg: int) -> float:
    return _PARTICLES[abs(pdg)].mass


def charge(pdg: int) -> int:
    q = _PARTICLES[abs(pdg)].charge
    return q if pdg > 0 else -q


def particle_name(pdg: int, ascii: bool = False) -> str:
    p = _PARTICLES[abs(pdg)]
    if pdg > 0:
        return p.ascii if ascii else p.name
    return p.anti_ascii if ascii else p.anti_name


def is_neutrino(pdg: int) -> bool:
    return abs(pdg) in NEUTRINOS


def is_hadron(pdg: int) -> bool:
    return abs(pdg) in HADRONS


def is_charged_lepton(pdg: int) -> bool:
    return abs(pdg) in CHARGED_LEPTONS


@dataclass(frozen=True)
class Resonance:
    """An intermediate resonance a channel may proceed through (tau -> R nu_tau, R -> daughters)."""

    pdg: int
    daughters: tuple[int, ...]

    @property
    def mass(self) -> float:
        return info(self.pdg).mass

    @property
    def width(self) -> float:
        return info(self.pdg).width


@dataclass(frozen=True)
class Channel:
    """One tau- decay channel.

    ``visible`` lists the products of the published table (everything but the nu_tau), in its
    order; ``daughters`` is the full list of decay products in the order the phase-space
    generator uses (for leptonic channels the order makes the V-A matrix element a function of
    one invariant mass, see ``decay.py``).
    """

    index: int
    visible: tuple[int, ...]
    branching_ratio: float
    leptonic: bool = False
    resonance: Resonance | None = None
    daughters: tuple[int, ...] = field(default=())

    @property
    def name(self) -> str:
        """Unicode name with the tau neutrino, e.g. ``"π⁻ π⁰ ν"``."""
        return " ".join(particle_name(p) for p in self.visible) + " ν"

    @property
    def short_name(self) -> str:
        """Unicode name of the visible products, as in the published table: ``"π⁻ π⁰"``."""
        return " ".join(particle_name(p) for p in self.visible)

    @property
    def ascii_name(self) -> str:
        """ASCII name, e.g. ``"pi- pi0 nu"``."""
        return " ".join(particle_name(p, ascii=True) for p in self.visible) + " nu"

    @property
    def masses(self) -> np.ndarray:
        return np.array([mass(p) for p in self.daughters])

    @property
    def charges(self) -> tuple[int, ...]:
        return tuple(charge(p) for p in self.daughters)


PIM, PIP, KM, KP = -PI_PLUS, PI_PLUS, -K_PLUS, K_PLUS
KS, KL = K_SHORT, K_LONG

# (visible products, branching ratio) in the SHERPA-DEC order.
_TABLE: list[tuple[tuple[int, ...], float]] = [
    ((ELECTRON, -NU_E), 0.1784),
    ((MUON, -NU_MU), 0.1736),
    ((PIM,), 0.1106),
    ((KM,), 0.00686),
    ((PIM, PI0), 0.2542),
    ((KM, KS), 0.00077),
    ((KM, KL), 0.00077),
    ((PIM, KS), 0.00445),
    ((PIM, KL), 0.00445),
    ((KM, PI0), 0.0045),
    ((PIM, PI0, PI0), 0.0917),
    ((PIP, PIM, PIM), 0.0916),
    ((PIM, KS, PI0), 0.00185),
    ((PIM, KL, PI0), 0.00185),
    ((KM, PIP, PIM), 0.0033),
    ((KM, PI0, PI0), 0.00058),
    ((KM, KP, PIM), 0.00155),
    ((KM, KS, PI0), 0.000755),
    ((KM, KL, PI0), 0.000755),
    ((PIM, KS, KL), 0.00055),
    ((PIM, KS, KS), 0.00024),
    ((PIM, KL, KL), 0.00024),
    ((KM, KM, KP), 3.7e-5),
    ((PIP, PIM, PIM, PI0), 0.0425),
    ((PIM, PI0, PI0, PI0), 0.0108),
    ((KM, PI0, PI0, PI0), 0.00038),
    ((KS, PIM, PI0, PI0), 0.000312),
    ((KL, PIM, PI0, PI0), 0.000312),
    ((KM, KP, PIM, PI0), 0.00042),
    ((PIM, ETA), 0.00013),
    ((KM, ETA), 0.00027),
    ((PIM, ETA, ETA), 0.0001),
    ((ETA, PIM, PI0), 0.00174),
    ((PIM, PIM, PIP, PI0, PI0), 0.0055),
    ((PIM, PI0, PI0, PI0, PI0), 0.00095),
    ((KM, PI0, PI0, PI0, PI0), 0.00005),
    ((PIM, PIM, PIP, PI0, PI0, PI0), 0.002748),
    ((PIM, PIM, PIM, PIP, PIP, PI0), 0.000181),
]

# Resonances the dominant low-multiplicity channels proceed through (used when the simulator is
# configured with resonances=True): rho(770) -> pi pi0, K*(892) -> K pi, a1(1260) -> 3 pi.
_RESONANCES: dict[int, Resonance] = {
    4: Resonance(-RHO_PLUS, (PIM, PI0)),
    7: Resonance(-K_STAR_PLUS, (PIM, KS)),
    8: Resonance(-K_STAR_PLUS, (PIM, KL)),
    9: Resonance(-K_STAR_PLUS, (KM, PI0)),
    10: Resonance(-A1_PLUS, (PIM, PI0, PI0)),
    11: Resonance(-A1_PLUS, (PIP, PIM, PIM)),
}


def _build_channels() -> tuple[Channel, ...]:
    channels = []
    for i, (visible, br) in enumerate(_TABLE):
        leptonic = visible[0] in (ELECTRON, MUON)
        if leptonic:
            # (charged lepton, nu_tau, anti-neutrino): see decay.leptonic_weight.
            daughters = (visible[0], NU_TAU, visible[1])
        else:
            daughters = visible + (NU_TAU,)
        channels.append(Channel(i, visible, br, leptonic, _RESONANCES.get(i), daughters))
    return tuple(channels)


CHANNELS: tuple[Channel, ...] = _build_channels()
NUM_CHANNELS = len(CHANNELS)
BRANCHING_RATIOS = np.array([c.branching_ratio for c in CHANNELS])
# The published ratios sum to 1.000 up to rounding; the categorical needs exact normalisation.
CHANNEL_PROBS = BRANCHING_RATIOS / BRANCHING_RATIOS.sum()
CHANNEL_NAMES = [c.name for c in CHANNELS]
CHANNEL_ASCII_NAMES = [c.ascii_name for c in CHANNELS]

# eta decay modes (PDG, renormalised over the four listed, which cover 99% of the width).
ETA_DECAYS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((PHOTON, PHOTON), 0.3936),
    ((PI0, PI0, PI0), 0.3257),
    ((PI_PLUS, -PI_PLUS, PI0), 0.2292),
    ((PI_PLUS, -PI_PLUS, PHOTON), 0.0422),
)
ETA_DECAY_PROBS = np.array([br for _, br in ETA_DECAYS])
ETA_DECAY_PROBS = ETA_DECAY_PROBS / ETA_DECAY_PROBS.sum()


def _normalise(name: str) -> str:
    return " ".join(name.replace("ν_τ", "ν").replace("nu_tau", "nu").split())


def channel_index(name: str | int) -> int:
    """Index of a channel from its index, unicode name or ASCII name, with or without the
    trailing neutrino: ``"π⁻ π⁰"``, ``"π⁻ π⁰ ν"`` and ``"pi- pi0 nu"`` all give 4."""
    if isinstance(name, (int, np.integer)):
        if not 0 <= int(name) < NUM_CHANNELS:
            raise ValueError(f"channel index {name} outside 0..{NUM_CHANNELS - 1}")
        return int(name)
    key = _normalise(name)
    for c in CHANNELS:
        if key in (c.name, c.short_name, c.ascii_name, c.ascii_name[:-3]):
            return c.index
    raise ValueError(f"unknown tau decay channel {name!r}; known: {', '.join(CHANNEL_NAMES)}")
