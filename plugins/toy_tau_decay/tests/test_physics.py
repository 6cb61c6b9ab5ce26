"""Physics of the tau-decay simulator, checked without the probabilistic runtime.

The kinematics and the calorimeter draw through a numpy-backed sampler here, so these tests pin
down the physics alone: the channel table, four-momentum conservation, the accept/reject loops,
the V-A lepton spectrum and the calorimeter response.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from etalumis_toy_tau_decay import calorimeter, decay, physics
from etalumis_toy_tau_decay.decay import NumpySampler, Particle

M = physics.TAU_MASS


def on_shell(pdg: int, energy: float, px: float, py: float, pz: float) -> np.ndarray:
    return np.array([math.sqrt(px * px + py * py + pz * pz + physics.mass(pdg) ** 2), px, py, pz])


# ---------------------------------------------------------------------------------------------
# The channel table


def test_table_has_the_38_published_channels():
    assert physics.NUM_CHANNELS == 38
    assert physics.BRANCHING_RATIOS.sum() == pytest.approx(1.0, abs=1e-3)
    assert physics.CHANNELS[0].short_name == "e⁻ ν̄_e"
    assert physics.CHANNELS[4].name == "π⁻ π⁰ ν"
    assert physics.CHANNELS[4].ascii_name == "pi- pi0 nu"
    assert physics.CHANNELS[4].branching_ratio == 0.2542
    assert physics.CHANNELS[37].short_name == "π⁻ π⁻ π⁻ π⁺ π⁺ π⁰"
    assert len(set(physics.CHANNEL_NAMES)) == 38
    assert len(set(physics.CHANNEL_ASCII_NAMES)) == 38


@pytest.mark.parametrize("channel", physics.CHANNELS, ids=physics.CHANNEL_ASCII_NAMES)
def test_every_channel_conserves_charge_and_is_open(channel):
    assert sum(channel.charges) == -1          # a tau-
    assert physics.NU_TAU in channel.daughters  # lepton number
    assert sorted(channel.daughters) == sorted(channel.visible + (physics.NU_TAU,))
    assert channel.masses.sum() < M


def test_channel_lookup_by_index_and_names():
    assert physics.channel_index("π⁻ π⁰") == 4
    assert physics.channel_index("π⁻ π⁰ ν") == 4
    assert physics.channel_index("pi- pi0 nu") == 4
    assert physics.channel_index("pi- pi0") == 4
    assert physics.channel_index(11) == 11
    with pytest.raises(ValueError):
        physics.channel_index("pi+ pi+")
    with pytest.raises(ValueError):
        physics.channel_index(38)


# ---------------------------------------------------------------------------------------------
# Kinematics


@pytest.mark.parametrize("resonances", [True, False])
def test_four_momentum_is_conserved_in_every_channel(resonances):
    sampler = NumpySampler(11)
    for channel in physics.CHANNELS:
        for _ in range(15):
            p_tau = decay.tau_four_momentum(*sampler.rng.uniform([-3, -3, 43], [3, 3, 47]))
            event = decay.decay_tau(p_tau, channel.index, sampler, resonances=resonances)
            total = event.total_p4
            assert np.abs(total - p_tau).max() <= 1e-6 * p_tau[0], channel.ascii_name
            assert sum(p.charge for p in event.final_state) == -1
            for p in event.final_state:
                m2 = p.p4[0] ** 2 - p.p4[1:] @ p.p4[1:]
                assert m2 == pytest.approx(p.mass ** 2, abs=1e-6 * p.p4[0] ** 2)
            # pi0 -> gamma gamma: no pi0 survives, and photons come in pairs from them
            assert all(p.pdg != physics.PI0 for p in event.final_state)
            assert all(p.pdg != physics.ETA for p in event.final_state)


def test_two_body_decay_at_rest_is_back_to_back_with_the_textbook_momentum():
    sampler = NumpySampler(0)
    event = decay.decay_tau(np.array([M, 0.0, 0.0, 0.0]), 2, sampler)   # pi- nu
    pi, nu = event.final_state
    m_pi = physics.mass(physics.PI_PLUS)
    expected = (M * M - m_pi * m_pi) / (2 * M)
    assert pi.momentum == pytest.approx(expected, rel=1e-12)
    assert np.allclose(pi.p4[1:], -nu.p4[1:], atol=1e-12)


def test_leptonic_decays_follow_the_michel_spectrum():
    # V-A: <x> = <2E/M> of the charged lepton is 7/10 in the tau rest frame for a massless
    # lepton; flat phase space would give 2/3.
    sampler = NumpySampler(5)
    n = 4000
    x = np.empty(n)
    for i in range(n):
        event = decay.decay_tau(np.array([M, 0.0, 0.0, 0.0]), 0, sampler)
        x[i] = 2 * event.final_state[0].energy / M
    se = x.std(ddof=1) / math.sqrt(n)
    assert abs(x.mean() - 0.7) < 4 * se
    assert abs(x.mean() - 2 / 3) > 4 * se


def test_isotropic_decay_directions():
    sampler = NumpySampler(3)
    n = 3000
    cos = np.array([decay.decay_tau(np.array([M, 0, 0, 0.0]), 2, sampler).final_state[0].p4[3]
                    for _ in range(n)]) / decay.two_body_momentum(M, 0.13957039, 0.0)
    # uniform on [-1, 1]: mean 0, variance 1/3
    assert abs(cos.mean()) < 4 * math.sqrt(1 / 3 / n)
    assert abs((cos ** 2).mean() - 1 / 3) < 4 * math.sqrt((1 / 5 - 1 / 9) / n)


@pytest.mark.parametrize("index", [0, 4, 10, 23, 33, 37])
def test_rejection_loops_run_as_often_as_their_acceptance_says(index):
    channel = physics.CHANNELS[index]
    masses = tuple(channel.masses)
    # acceptance per iteration from an independent bulk estimate of E[w] / bound
    acc, acc_se = decay.phase_space_acceptance(M, masses, channel.leptonic, num=100_000, seed=99)
    assert 0.2 <= acc <= 0.7   # Sherpa-like: the loop repeats with probability 0.3-0.8
    sampler = NumpySampler(index, count=True)
    n = 3000
    p_tau = decay.tau_four_momentum(0.5, -1.0, 45.0)
    for _ in range(n):
        decay.n_body_decay(p_tau, M, masses, sampler, "t", leptonic=channel.leptonic)
    iterations = sampler.counts["t_genbod_accept"] / n
    # iterations ~ geometric(acc): mean 1/acc, variance (1 - acc)/acc²
    se = math.sqrt((1 - acc) / acc ** 2 / n + (acc_se / acc ** 2) ** 2)
    assert abs(iterations - 1 / acc) < 4 * se
    assert sampler.counts["t_genbod_mass"] == (len(masses) - 2) * sampler.counts["t_genbod_accept"]


def test_resonance_mass_follows_the_breit_wigner_peak():
    sampler = NumpySampler(8, count=True)
    rho = physics.CHANNELS[4].resonance
    daughters = [physics.mass(p) for p in rho.daughters]
    m = np.array([decay.resonance_mass(rho.mass, rho.width, daughters, M, sampler, "r")
                  for _ in range(3000)])
    assert m.min() >= sum(daughters) and m.max() <= M
    median = np.median(m)
    assert abs(median - rho.mass) < 0.05        # the peak survives the phase-space weight
    assert sampler.counts["r_bw_accept"] > 3000  # and the loop does reject


# ---------------------------------------------------------------------------------------------
# Calorimeter


@pytest.fixture(scope="module")
def cal():
    return calorimeter.Calorimeter()


@pytest.mark.parametrize("pdg,fraction", [(physics.PHOTON, 0.5), (physics.ELECTRON, 0.5),
                                          (-physics.PI_PLUS, 0.25), (physics.K_LONG, 0.25)])
def test_visible_energy_matches_the_sampling_fraction(cal, pdg, fraction):
    sampler = NumpySampler(pdg % 1000)
    rng = np.random.default_rng(1)
    total, expected = 0.0, 0.0
    for _ in range(20):
        e = rng.uniform(2.0, 20.0)
        px, py = rng.uniform(-0.1, 0.1, size=2) * e
        p = Particle(pdg, on_shell(pdg, 0, px, py, math.sqrt(e * e - px * px - py * py)))
        assert cal.sampling_fraction(pdg) == fraction
        total += cal.deposit([p], sampler).sum()
        expected += fraction * p.energy
    # total / quantum ~ Poisson(expected / quantum); containment losses are negligible
    sd = math.sqrt(expected / cal.quantum) * cal.quantum
    assert abs(total - expected) < 4 * sd


def test_invisible_particles_and_muons_deposit_nothing(cal):
    sampler = NumpySampler(0, count=True)
    particles = [Particle(pdg, on_shell(pdg, 0, 0.3, 0.2, 20.0))
                 for pdg in (physics.NU_TAU, -physics.NU_E, -physics.NU_MU, physics.MUON)]
    assert not particles[0].visible and particles[3].visible
    deposits = cal.deposit(particles, sampler)
    assert deposits.shape == (35, 35, 20)
    assert deposits.sum() == 0.0
    assert sampler.counts == {}   # not even a Poisson draw


def test_full_events_deposit_the_expected_energy(cal):
    sampler = NumpySampler(21)
    total, expected = 0.0, 0.0
    for channel in (0, 1, 2, 4, 10, 11, 23):
        for _ in range(5):
            event = decay.decay_tau(decay.tau_four_momentum(1.0, -0.5, 45.0), channel, sampler)
            total += cal.deposit(event.final_state, sampler).sum()
            expected += cal.expected_energy(event.final_state)
    sd = math.sqrt(expected / cal.quantum) * cal.quantum
    assert abs(total - expected) < 4 * sd + 0.01 * expected   # allow 1% leakage out of the grid


def test_shower_is_centred_on_the_line_of_flight(cal):
    sampler = NumpySampler(4)
    direction = np.array([0.06, -0.04, 1.0])
    direction /= np.linalg.norm(direction)
    particle = Particle(physics.PHOTON, np.concatenate([[10.0], 10.0 * direction]))
    points = cal.shower_points(particle, 20000, sampler)
    sigma = math.sqrt(0.5)                      # EM shape 0.5 read as a variance
    distance = 4.0 / direction[2] + 5 * sigma   # front face plus half the 10-sigma depth
    mean = points.mean(axis=0)
    se = points.std(axis=0, ddof=1) / math.sqrt(len(points))
    assert np.all(np.abs(mean - distance * direction) < 4 * se)
    # along the flight direction the spread is the longitudinal sigma
    along = (points - mean) @ direction
    assert along.std() == pytest.approx(sigma, rel=0.03)


def test_binning_agrees_with_histogramdd_and_drops_outside_points(cal):
    rng = np.random.default_rng(0)
    points = rng.uniform([-4, -4, 2], [4, 4, 17], size=(5000, 3))
    counts, _ = np.histogramdd(points, bins=cal.edges)
    np.testing.assert_allclose(cal.bin(points), counts * cal.quantum)
    assert cal.bin(points).sum() < 5000 * cal.quantum


def test_expected_deposits_are_the_mean_of_the_sampled_ones(cal):
    sampler = NumpySampler(6)
    for pdg in (physics.PHOTON, -physics.PI_PLUS):
        particle = Particle(pdg, on_shell(pdg, 0, 1.2, -0.8, 20.0))
        n = 100_000
        sampled = cal.bin(cal.shower_points(particle, n, sampler))
        expected = cal.expected_deposits(particle, n)
        assert expected.sum() == pytest.approx(n * cal.quantum, rel=1e-3)
        busy = expected > 100 * cal.quantum
        chi2 = (sampled[busy] - expected[busy]) ** 2 / (expected[busy] * cal.quantum)
        # Poisson counts per voxel: chi2 per voxel has mean 1 and variance about 2
        assert abs(chi2.mean() - 1.0) < 4 * math.sqrt(2.0 / busy.sum()) + 0.05


def test_shape_parameters_can_be_read_as_standard_deviations():
    cal = calorimeter.Calorimeter(shape_is="stddev")
    sampler = NumpySampler(2)
    particle = Particle(physics.PHOTON, np.array([10.0, 0.0, 0.0, 10.0]))
    points = cal.shower_points(particle, 20000, sampler)
    assert points[:, 0].std() == pytest.approx(0.2, rel=0.03)
    assert points[:, 2].mean() == pytest.approx(4.0 + 2.5, abs=0.02)
    with pytest.raises(ValueError):
        calorimeter.Calorimeter(shape_is="sigma")
