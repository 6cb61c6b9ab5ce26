"""The photon placer: the depth-summed calorimeter it scores with, a density that is the
draws' own, and photons placed where the deposits are."""

from __future__ import annotations

import math

import numpy as np
import pytest

from etalumis_toy_tau_decay.calorimeter import Calorimeter
from etalumis_toy_tau_decay.decay import Particle
from etalumis_toy_tau_decay.physics import PHOTON, PIM
from etalumis_toy_tau_decay.placing import CELLS, UNIFORM_SHARE, PhotonPlacer, photons

CALORIMETER = Calorimeter()
BACKGROUND = 1e-4
TRUE_ANGLES = (0.6, 1.2)
WIDTH = (2.0 / CELLS, 2.0 * math.pi / CELLS)


def four(p, mass):
    p = np.asarray(p, dtype=float)
    return np.concatenate([[math.sqrt(p @ p + mass * mass)], p])


@pytest.mark.parametrize("p", [[0.3, -0.2, 5.0], [2.0, 1.5, 10.0], [0.0, 0.0, 3.0]])
@pytest.mark.parametrize("pdg", [PHOTON, PIM])
def test_the_depth_summed_map_is_the_expected_counts_summed_over_depth(p, pdg):
    """Within 10 % (L1) for steep and tilted showers, EM and hadronic: the tilt's spread
    along the azimuth is kept, the x-y correlation is not."""
    p4 = four(p, 0.0 if pdg == PHOTON else 0.1396)
    full = CALORIMETER.expected_counts([Particle(pdg, p4)]).sum(axis=2)
    coarse = CALORIMETER.expected_map(p4[None], pdg)[0]
    assert coarse.sum() == pytest.approx(full.sum(), rel=1e-3)
    assert np.abs(coarse - full).sum() < 0.1 * full.sum()


def observed_pi0(energy):
    """A π⁰ seen alone: Poisson counts about its photons at TRUE_ANGLES."""
    pi0 = four([0.1, -0.05, energy], 0.135)
    rates = CALORIMETER.expected_counts([Particle(PHOTON, g)
                                         for g in photons(pi0, *TRUE_ANGLES)[0]])
    counts = np.random.default_rng(0).poisson(rates + BACKGROUND)
    placer = PhotonPlacer(CALORIMETER, BACKGROUND)
    return placer, pi0, placer.rest([], []), placer.project(counts)


def coarse(angles):
    """The coarse cell of ``angles`` (cos θ, φ)."""
    return (min(int((angles[0] + 1.0) / WIDTH[0]), CELLS - 1),
            int((angles[1] % (2 * math.pi)) / WIDTH[1]))


def test_the_density_is_the_draws_own():
    """Each draw's log density is what :meth:`log_density` gives for it, each level's cell
    probabilities add up to 1 with the uniform share as their floor, and the likeliest coarse
    cell is drawn as often as its probability says (4 binomial σ)."""
    placer, pi0, rest, observed = observed_pi0(3.0)
    probs = placer._probs(pi0, rest, observed, np.array([-1.0, 0.0]), np.array(WIDTH), CELLS)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert probs.min() >= UNIFORM_SHARE / probs.size * (1 - 1e-12)
    rng = np.random.default_rng(1)
    draws = [placer.draw(pi0, rest, observed, rng) for _ in range(300)]
    for angles, log_q in draws:
        assert log_q == pytest.approx(placer.log_density(angles, pi0, rest, observed), abs=1e-9)
    top = divmod(int(np.argmax(probs)), CELLS)
    share = float(probs.max())
    hits = sum(coarse(angles) == top for angles, _ in draws)
    assert abs(hits - 300 * share) < 4 * math.sqrt(300 * share * (1 - share)) + 1


@pytest.mark.parametrize("energy", [2.0, 3.0])
def test_it_places_the_photons_where_the_deposits_are(energy):
    """Most draws land in the true angles' coarse cell or its neighbours, or in those of its
    twin (the photons swapped: −cos θ, φ + π): 18 cells of 256, 7 % of draws from the
    prior."""
    placer, pi0, rest, observed = observed_pi0(energy)
    rng = np.random.default_rng(3)
    near = []
    for true in (TRUE_ANGLES, (-TRUE_ANGLES[0], TRUE_ANGLES[1] + math.pi)):
        i, j = coarse(true)
        near += [(i + di, (j + dj) % CELLS) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
    draws = [coarse(placer.draw(pi0, rest, observed, rng)[0]) for _ in range(100)]
    assert sum(d in near for d in draws) > 50


def test_without_an_observation_the_angles_are_their_prior():
    placer, pi0, rest, _ = observed_pi0(3.0)
    rng = np.random.default_rng(2)
    draws = [placer.draw(pi0, rest, None, rng) for _ in range(2000)]
    assert all(q == pytest.approx(-math.log(4 * math.pi)) for _, q in draws)
    cos_theta = np.array([a[0] for a, _ in draws])
    assert abs(cos_theta.mean()) < 4 * math.sqrt(1 / 3 / 2000)
