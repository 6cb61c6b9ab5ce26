"""The probabilistic tau-decay simulator: prior over the tau momentum and decay channel, decay
kinematics with accept/reject loops, a calorimeter, and a per-voxel observation likelihood:
by default the exact one, independent Poisson deposit counts per voxel."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from etalumis_core import PythonSimulator, observe, sample, tag
from etalumis_core.distributions import Categorical, Normal, Poisson, Uniform

from . import physics
from .calorimeter import Calorimeter
from .decay import DecayEvent, decay_tau, tau_four_momentum
from .jumps import ChannelJump, ChannelJumps
from .moves import TauMomentumMoves
from .splits import SplitMerge

logger = logging.getLogger(__name__)

LIKELIHOODS = ("poisson", "poisson_normal", "fixed_normal")
LIKELIHOOD_MEANS = ("expected", "sampled")
CALORIMETER_SHAPE = (35, 35, 20)


class PPLSampler:
    """Routes every random number of the kinematics and the calorimeter through ``sample``."""

    def uniform(self, low: float, high: float, address: str, name: str | None = None) -> float:
        return sample(Uniform(low, high), name=name, address=address)

    def categorical(self, probs: np.ndarray, address: str, name: str | None = None) -> int:
        return int(sample(Categorical(probs), name=name, address=address))

    def poisson(self, rate: float, address: str, control: bool = True) -> int:
        return int(sample(Poisson(rate), address=address, control=control))

    def normal(self, mean: np.ndarray, stddev: np.ndarray, address: str,
               control: bool = False) -> np.ndarray:
        return sample(Normal(mean, stddev), address=address, control=control)


def exact_calorimeter_likelihood(rates: np.ndarray, background: float = 1e-4) -> Poisson:
    """The exact likelihood of the voxel deposit counts: independent Poisson(rates +
    background) (see :meth:`Calorimeter.expected_counts`). ``background`` is the mean number of
    stray deposits per voxel (detector noise, about 2 per event over the 24,500 voxels at the
    default); it keeps a deposit where no shower reaches possible, at a cost of
    log(1/background) ≈ 9 nats."""
    return Poisson(rates + background)


def calorimeter_likelihood(deposits: np.ndarray, kind: str = "poisson_normal",
                           sigma0: float = 0.005, poisson_scale: float = 0.005) -> Normal:
    """Per-voxel likelihood of an observed calorimeter given the simulated mean ``deposits``
    (GeV per voxel).

    ``poisson_normal``: Normal(deposits, sqrt(poisson_scale * deposits + sigma0²)). With
    ``poisson_scale`` equal to the deposit quantum (5 MeV, the default) the variance is exactly
    that of the Poisson number of deposits in the voxel; ``poisson_scale=1`` is the public
    "variance = deposit" variant (see the README for why it is not the default). sigma0 keeps
    empty voxels from having zero width. ``fixed_normal``: Normal(deposits, sigma0).
    """
    if kind == "poisson_normal":
        return Normal(deposits, np.sqrt(poisson_scale * deposits + sigma0 * sigma0))
    if kind == "fixed_normal":
        return Normal(deposits, np.broadcast_to(float(sigma0), deposits.shape))
    raise ValueError(f"unknown likelihood {kind!r}; choose one of {', '.join(LIKELIHOODS)}")


def event_summary(event: DecayEvent, calorimeter: Calorimeter) -> dict[str, float]:
    """Composition and energy flow of a decay (the quantities the model tags)."""
    n_ch_had = n_neu_had = n_photons = n_leptons = n_nu = 0
    e_ch_had = e_neu_had = e_photons = e_leptons = e_nu = 0.0
    for p in event.final_state:
        pdg, e = p.pdg, p.energy
        if physics.is_neutrino(pdg):
            n_nu += 1
            e_nu += e
        elif pdg == physics.PHOTON:
            n_photons += 1
            e_photons += e
        elif physics.is_charged_lepton(pdg):
            n_leptons += 1
            e_leptons += e
        elif p.charge != 0:
            n_ch_had += 1
            e_ch_had += e
        else:
            n_neu_had += 1
            e_neu_had += e
    n_pi0 = sum(1 for pdg in event.channel.visible if pdg == physics.PI0)
    n_eta = sum(1 for pdg in event.channel.visible if pdg == physics.ETA)
    return {
        "n_charged_hadrons": n_ch_had, "n_neutral_hadrons": n_neu_had,
        "n_neutral_pions": n_pi0, "n_etas": n_eta, "n_photons": n_photons,
        "n_leptons": n_leptons, "n_neutrinos": n_nu, "n_charged": n_ch_had + n_leptons,
        "e_tau": event.tau.energy,
        "e_visible": e_ch_had + e_neu_had + e_photons + e_leptons,
        "e_invisible": e_nu, "e_charged_hadrons": e_ch_had, "e_neutral_hadrons": e_neu_had,
        "e_photons": e_photons, "e_leptons": e_leptons,
        "e_calorimeter_expected": calorimeter.expected_energy(event.final_state),
    }


TAG_NAMES = ("n_charged_hadrons", "n_neutral_hadrons", "n_neutral_pions", "n_etas", "n_photons",
             "n_leptons", "n_neutrinos", "n_charged", "e_tau", "e_visible", "e_invisible",
             "e_charged_hadrons", "e_neutral_hadrons", "e_photons", "e_leptons",
             "e_calorimeter_expected", "e_calorimeter")


class TauDecaySimulator(PythonSimulator):
    """A tau- from a Z decay, decaying through one of 38 channels in front of a calorimeter.

    Random choices, in order: ``px``, ``py``, ``pz`` (uniform), ``channel`` (categorical over
    :data:`physics.CHANNELS` with the published branching ratios), the decay kinematics
    (accept/reject loops, directions, pi0/eta decays). The observation ``calorimeter`` is a
    (35, 35, 20) array.

    With the default ``likelihood="poisson"`` it holds the number of 5 MeV deposits in each
    voxel, and the likelihood is exact: each particle's Poisson number of deposits and their
    Gaussian positions are marginalised, so the voxel counts are independent Poissons (see
    :meth:`Calorimeter.expected_counts`) and the trace holds no deposit draws at all. With the
    Normal approximations (``poisson_normal``, ``fixed_normal``) the deposits are drawn (per
    showering particle its Poisson number of deposits and one batched Gaussian draw of their
    positions) and the observation is the deposited energy in GeV.

    Parameters
    ----------
    px_range, py_range, pz_range:
        Bounds of the uniform priors of the tau momentum (GeV).
    likelihood:
        ``"poisson"`` (default, exact, in deposit counts; see
        :func:`exact_calorimeter_likelihood`), or the approximations ``"poisson_normal"`` and
        ``"fixed_normal"`` (in GeV), see :func:`calorimeter_likelihood`.
    background:
        Mean number of stray deposits per voxel of the ``poisson`` likelihood.
    likelihood_mean:
        What the Normal likelihoods are centred on: ``"expected"`` (default), the mean deposit
        per voxel given the drawn numbers of deposits (the shower Gaussians integrated over the
        voxels), or ``"sampled"``, the binned realisation of the deposit positions (as in the
        public calorimeter code). See the README for why the default is ``expected``.
    sigma0:
        Noise floor of the likelihood (GeV per voxel).
    poisson_scale:
        Variance per GeV of deposit of the ``poisson_normal`` likelihood (GeV); the default, the
        deposit quantum, is the Poisson variance of the voxel's deposit count.
    resonances:
        Let the rho, K* and a1 channels proceed through their resonance.
    decay_pi0, decay_eta:
        Decay pi0 -> gamma gamma and eta to its main modes, so photons shower electromagnetically.
    shape_is:
        How the calorimeter's shower shape parameters are read: ``"variance"`` or ``"stddev"``.
    control_deposit_counts:
        Whether the number of deposits of each particle is a controlled (proposable) choice.
    """

    observations = {"calorimeter": CALORIMETER_SHAPE}

    def __init__(self, px_range: Sequence[float] = (-3.0, 3.0),
                 py_range: Sequence[float] = (-3.0, 3.0),
                 pz_range: Sequence[float] = (43.0, 47.0), likelihood: str = "poisson",
                 background: float = 1e-4,
                 likelihood_mean: str = "expected", sigma0: float = 0.005,
                 poisson_scale: float = 0.005, resonances: bool = True, decay_pi0: bool = True,
                 decay_eta: bool = True, shape_is: str = "variance",
                 control_deposit_counts: bool = True, name: str = "toy_tau_decay") -> None:
        for label, r in (("px_range", px_range), ("py_range", py_range), ("pz_range", pz_range)):
            if len(r) != 2 or not float(r[0]) < float(r[1]):
                raise ValueError(f"{label} must be [low, high] with low < high, got {r!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of "
                             f"{', '.join(LIKELIHOODS)}")
        if likelihood_mean not in LIKELIHOOD_MEANS:
            raise ValueError(f"unknown likelihood_mean {likelihood_mean!r}; choose one of "
                             f"{', '.join(LIKELIHOOD_MEANS)}")
        self.likelihood_mean = likelihood_mean
        if not float(background) > 0.0:
            raise ValueError(f"background must be positive (a deposit where no shower reaches "
                             f"must stay possible), got {background!r}")
        self.background = float(background)
        if not float(sigma0) > 0.0:
            raise ValueError(f"sigma0 must be positive, got {sigma0!r}")
        self.px_range = (float(px_range[0]), float(px_range[1]))
        self.py_range = (float(py_range[0]), float(py_range[1]))
        self.pz_range = (float(pz_range[0]), float(pz_range[1]))
        self.likelihood = likelihood
        self.sigma0 = float(sigma0)
        if not float(poisson_scale) >= 0.0:
            raise ValueError(f"poisson_scale must be non-negative, got {poisson_scale!r}")
        self.poisson_scale = float(poisson_scale)
        self.resonances = bool(resonances)
        self.decay_pi0 = bool(decay_pi0)
        self.decay_eta = bool(decay_eta)
        self.calorimeter = Calorimeter(shape_is=shape_is, control_counts=control_deposit_counts)
        self.channel_probs = physics.CHANNEL_PROBS.tolist()
        self._sampler = PPLSampler()
        self._moves = TauMomentumMoves(self.resonances).moves()
        look_alike = ChannelJumps(self.resonances)
        self._split = split = SplitMerge(self.resonances, self.calorimeter, self.background)
        self._jumps = (ChannelJump(((look_alike.swap, look_alike.swaps),
                                    (look_alike.relabel, look_alike.relabels),
                                    (split, split.neighbours))),)
        super().__init__(name=name, observations=self.observations)

    def config(self) -> dict[str, Any]:
        return {"px_range": list(self.px_range), "py_range": list(self.py_range),
                "pz_range": list(self.pz_range), "likelihood": self.likelihood,
                "background": self.background, "likelihood_mean": self.likelihood_mean,
                "sigma0": self.sigma0, "poisson_scale": self.poisson_scale,
                "resonances": self.resonances,
                "decay_pi0": self.decay_pi0, "decay_eta": self.decay_eta,
                "shape_is": self.calorimeter.shape_is,
                "control_deposit_counts": self.calorimeter.control_counts}

    def forward(self) -> dict[str, Any]:
        s = self._sampler
        px = sample(Uniform(*self.px_range), name="px", address="tau_px")
        py = sample(Uniform(*self.py_range), name="py", address="tau_py")
        pz = sample(Uniform(*self.pz_range), name="pz", address="tau_pz")
        channel = int(sample(Categorical(self.channel_probs), name="channel",
                             address="tau_channel"))
        event = decay_tau(tau_four_momentum(px, py, pz), channel, s, self.resonances,
                          self.decay_pi0, self.decay_eta)
        if self.likelihood == "poisson":
            return self._observe_counts(px, py, pz, channel, event)
        expected = self.likelihood_mean == "expected"
        deposits, mean = self.calorimeter.simulate(event.final_state, s, expected=expected)
        summary = event_summary(event, self.calorimeter)
        summary["e_calorimeter"] = float(deposits.sum())
        for key in TAG_NAMES:
            tag(summary[key], key)
        observe(calorimeter_likelihood(mean if expected else deposits, self.likelihood,
                                       self.sigma0, self.poisson_scale),
                name="calorimeter")
        return {"channel": channel, "px": px, "py": py, "pz": pz, "calorimeter": deposits,
                "calorimeter_expected": mean, **summary}

    def _observe_counts(self, px: float, py: float, pz: float, channel: int,
                        event: DecayEvent) -> dict[str, Any]:
        """The exact likelihood: no deposit is drawn; the counts are observed under their
        marginal distribution."""
        rates = self.calorimeter.expected_counts(event.final_state)
        summary = event_summary(event, self.calorimeter)
        for key in TAG_NAMES[:-1]:
            tag(summary[key], key)
        counts = observe(exact_calorimeter_likelihood(rates, self.background), name="calorimeter")
        self._split.observe(counts)   # where its jumps place a new π⁰'s photons
        if counts is not None:   # None where the engine does not say (served over PPX)
            summary["e_calorimeter"] = float(np.sum(counts)) * self.calorimeter.quantum
            tag(summary["e_calorimeter"], "e_calorimeter")
        return {"channel": channel, "px": px, "py": py, "pz": pz, "calorimeter": counts,
                "calorimeter_expected": rates + self.background, **summary}

    def report(self, posterior: Any, truth: Any, output_dir: str) -> dict:
        from .analysis import report
        return report(posterior, truth, output_dir)

    def moves(self) -> tuple:
        """Moves of the tau momentum that keep every visible particle in place (along the cone
        of a one-neutrino decay, or about the lepton of a leptonic one; see :mod:`.moves`), for
        engines that take a simulator's own moves (SMC)."""
        return self._moves

    def jumps(self) -> tuple:
        """Jumps between decay channels, for engines that take a simulator's own jumps (SMC):
        between channels the calorimeter cannot tell apart, a pion for a kaon of the same
        energy and direction and a K_S for a K_L (see :mod:`.jumps`), between channels with
        one π⁰ or one π⁺ π⁻ pair more or less, a particle split in two or three and merged
        back, and between channels whose hadrons differ in species alone (see
        :mod:`.splits`). They come as one jump, drawn among those that move the trace's
        channel (:class:`.jumps.ChannelJump`)."""
        return self._jumps

    def __repr__(self) -> str:
        return f"TauDecaySimulator({self.config()!r})"
