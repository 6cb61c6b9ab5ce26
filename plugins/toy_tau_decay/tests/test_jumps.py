"""The jumps between look-alike channels: the pion-kaon swap keeps the calorimeter picture,
undoes itself, carries the right Jacobian and leaves the prior invariant; the K_S/K_L relabel
keeps every draw."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

import etalumis_core as et
from etalumis_core.seeding import chunk_rng
from etalumis_core.engines.mh import MHController, _controlled_values
from etalumis_toy_tau_decay import TauDecaySimulator, physics
from etalumis_toy_tau_decay.decay import (NumpySampler, ReplaySampler, decay_tau,
                                          tau_four_momentum)
from etalumis_toy_tau_decay.jumps import LOOK_ALIKES, ChannelJump, ChannelJumps
from etalumis_toy_tau_decay.moves import CHANNEL, PX, PY, PZ

SWAP = ChannelJumps()


@pytest.fixture(scope="module")
def sim():
    return TauDecaySimulator()


def event(sim, channel: int, redrawn: bool = False):
    """The first event of ``channel`` whose swap stays in the prior's box (``redrawn``: and
    whose resonance mass loop rejected a draw first)."""
    seed = 0
    while True:
        trace = et.simulate(sim, seed=seed)
        seed += 1
        again = f"tau_c{channel:02d}_bw_mass__Uniform__2"
        if trace.result["channel"] == channel and (
                not redrawn or again in _controlled_values(trace)):
            swapped = SWAP.swap(_controlled_values(trace))
            if swapped is not None and abs(swapped[0][PX]) < 3 and abs(swapped[0][PY]) < 3:
                return trace


def replay(sim, values, observed):
    controller = MHController(chunk_rng(0, 0), {"calorimeter": observed})
    controller.previous = values
    return et.run_trace(sim, controller)


@pytest.mark.parametrize("channel,redrawn", [(2, False), (3, False), (4, False), (4, True),
                                             (9, False)],
                         ids=["pi nu", "K nu", "rho nu", "rho nu, mass drawn again", "K* nu"])
def test_the_swap_keeps_the_calorimeter_and_undoes_itself(sim, channel, redrawn):
    truth = event(sim, channel, redrawn)
    values = _controlled_values(truth)
    new, log_jacobian = SWAP.swap(values)
    observed = truth.result["calorimeter"]
    after = replay(sim, new, observed)
    assert after.result["channel"] == physics.channel_index(
        {2: "K⁻ ν", 3: "π⁻ ν", 4: "K⁻ π⁰ ν", 9: "π⁻ π⁰ ν"}[channel])
    assert all(v.reused for v in after.variables if v.kind == "sample" and v.control)
    assert set(_controlled_values(after)) == set(new)
    np.testing.assert_allclose(after.result["calorimeter_expected"],
                               truth.result["calorimeter_expected"], rtol=0, atol=1e-9)
    assert after.log_likelihood == pytest.approx(truth.log_likelihood, abs=1e-6)
    assert math.dist([new[PX], new[PY]], [values[PX], values[PY]]) > 1e-3   # the tau moved
    back, log_back = SWAP.swap(new)
    assert set(back) == set(values)
    for address, value in values.items():
        assert back[address] == pytest.approx(value, abs=1e-9), address
    assert log_back == pytest.approx(-log_jacobian, abs=1e-9)


def trace_keys(values, channel):
    """The swap's coordinates in the order of the decay's draws (the photons' angles, which
    it copies, left out)."""
    prefix = f"tau_c{channel:02d}"
    return [PX, PY, PZ] + sorted(k for k in values if k.startswith(prefix))


@pytest.mark.parametrize("channel,redrawn", [(2, False), (4, False), (4, True), (9, False)],
                         ids=["pi nu", "rho nu", "rho nu, mass drawn again", "K* nu"])
def test_the_jacobian_is_the_determinant_of_the_map(sim, channel, redrawn, log_det):
    values = _controlled_values(event(sim, channel, redrawn))
    new, _ = SWAP.swap(values)
    keys = trace_keys(values, channel)
    new_keys = trace_keys(new, physics.CHANNELS[int(new[CHANNEL])].index)
    assert len(keys) == len(new_keys)
    # Pair the coordinates by their place in the trace: instance by instance, then name.
    order = lambda k: k.split("__")[0][8:] + k.split("__")[-1]  # noqa: E731
    keys.sort(key=order)
    new_keys.sort(key=order)

    def mapped(x):
        out, log_jacobian = SWAP.swap({**values, **dict(zip(keys, x))})
        return np.array([out[k] for k in new_keys]), log_jacobian

    x0 = np.array([values[k] for k in keys])
    assert mapped(x0)[1] == pytest.approx(log_det(mapped, x0, 1e-7), abs=1e-4)
    assert abs(mapped(x0)[1]) > 0.05   # a Jacobian that is not 1 was tested


def prior_draws(n, rng, channels=(4, 9)):
    """The decay's draws of τ → ρ ν or K* ν, each channel half the time (the prior below)."""
    draws = []
    for _ in range(n):
        p = rng.uniform([-3, -3, 43], [3, 3, 47])
        channel = int(rng.choice(channels))
        recorder = NumpySampler(rng, record=True)
        decay_tau(tau_four_momentum(*p), channel, recorder)
        draws.append({PX: p[0], PY: p[1], PZ: p[2], CHANNEL: channel, **recorder.values})
    return draws


def log_prior(values):
    """log p of the draws that differ between the two channels, under equal channel odds: the
    Breit-Wigner quantiles (uniform on a channel's range); every other draw is uniform on
    ranges the channels share."""
    channel = physics.CHANNELS[int(values[CHANNEL])]
    r = channel.resonance
    lo = sum(physics.mass(p) for p in r.daughters)
    cdf = lambda m: 0.5 + math.atan((m - r.mass) / (0.5 * r.width)) / math.pi  # noqa: E731
    width = cdf(physics.TAU_MASS) - cdf(lo)
    return -math.log(width) * sum(1 for k in values if "_bw_mass__" in k)


def resonance_mass(values):
    channel = physics.CHANNELS[int(values[CHANNEL])]
    event = decay_tau(tau_four_momentum(values[PX], values[PY], values[PZ]), channel,
                      ReplaySampler(values))
    return event.resonance_mass


def test_the_swap_leaves_the_prior_invariant():
    """Metropolis-Hastings with the swap alone, no likelihood, on prior draws of τ → ρ ν and
    τ → K* ν with equal odds: the channel shares, the resonance masses of each channel and the
    tau momentum must stay the prior's (about a third of the swaps are accepted; without the
    Breit-Wigner density in the Jacobian the K* masses after a step fail the test at
    p < 1e-10)."""
    rng = np.random.default_rng(3)
    start = prior_draws(4000, rng)
    moved, accepted = [], 0
    for values in start:
        proposal = SWAP.swap(values)
        if proposal is not None:
            new, log_jacobian = proposal
            inside = abs(new[PX]) <= 3 and abs(new[PY]) <= 3 and 43 <= new[PZ] <= 47
            log_alpha = log_prior(new) - log_prior(values) + log_jacobian
            if inside and math.log(rng.random()) < log_alpha:
                values, accepted = new, accepted + 1
        moved.append(values)
    assert accepted > 800
    kaons = sum(int(v[CHANNEL]) == 9 for v in moved)
    assert abs(kaons - 2000) < 4 * math.sqrt(1000)
    fresh = prior_draws(4000, np.random.default_rng(4))
    for channel in (4, 9):
        after = [resonance_mass(v) for v in moved if int(v[CHANNEL]) == channel]
        prior = [resonance_mass(v) for v in fresh if int(v[CHANNEL]) == channel]
        assert stats.ks_2samp(after, prior).pvalue > 1e-3, channel
    for key, (low, high) in ((PX, (-3, 3)), (PY, (-3, 3)), (PZ, (43, 47))):
        sample = np.array([v[key] for v in moved])
        assert stats.kstest(sample, stats.uniform(low, high - low).cdf).pvalue > 1e-3, key


@pytest.mark.parametrize("channel", [7, 12, 20])
def test_the_relabel_keeps_every_draw_and_the_calorimeter(channel):
    """τ → π⁻ K_S ν (through the K*), π⁻ K_S π⁰ ν and π⁻ K_S K_S ν: the same draws at the
    look-alike's addresses give the same picture, and the partners are drawn uniformly."""
    sim = TauDecaySimulator()
    probs = np.zeros(physics.NUM_CHANNELS)
    probs[list(LOOK_ALIKES[channel])] = 1.0 / len(LOOK_ALIKES[channel])   # rare channels
    sim.channel_probs = probs.tolist()
    truth = next(t for t in (et.simulate(sim, seed=s) for s in range(100))
                 if t.result["channel"] == channel)
    values = _controlled_values(truth)
    partners = Counter()
    rng = np.random.default_rng(0)
    for _ in range(200):
        new, log_jacobian = SWAP.relabel(values, rng)
        assert log_jacobian == 0.0
        partners[int(new[CHANNEL])] += 1
    assert set(partners) == set(LOOK_ALIKES[channel]) - {channel}
    assert min(partners.values()) > 200 / len(partners) - 4 * math.sqrt(200)
    after = replay(sim, new, truth.result["calorimeter"])
    assert all(v.reused for v in after.variables if v.kind == "sample" and v.control)
    assert set(_controlled_values(after)) == set(new)
    draws = lambda v: sorted(x for k, x in v.items() if k != CHANNEL)  # noqa: E731
    assert draws(_controlled_values(after)) == draws(values)
    np.testing.assert_array_equal(after.result["calorimeter_expected"],
                                  truth.result["calorimeter_expected"])
    assert SWAP.swap(values) is None


def test_channels_without_a_look_alike_are_left_alone(sim):
    values = _controlled_values(event(sim, 4))
    assert SWAP.relabel(values, np.random.default_rng(0)) is None
    values = _controlled_values(et.simulate(sim, seed=next(
        s for s in range(100) if et.simulate(sim, seed=s).result["channel"] == 10)))
    assert SWAP.swap(values) is None and SWAP.relabel(values, np.random.default_rng(0)) is None


def test_jumps_as_one_weigh_the_odds_of_the_jump_drawn():
    """Three channels at equal prior odds, one jump between 0 and 1 and one between 1 and 2:
    drawn among the jumps that move it, channel 1 proposes each neighbour half as often as
    they propose it. One Metropolis–Hastings step from the prior keeps the prior only with
    the draw's odds in the ratio (without them channel 0 falls to 1/6)."""
    def between(a, b):
        return lambda values, rng: ({CHANNEL: a + b - values[CHANNEL]}, 0.0)
    jump = ChannelJump(((between(0, 1), {0, 1}), (between(1, 2), {1, 2})))
    assert jump({CHANNEL: 3}, np.random.default_rng(0)) is None and jump({}, None) is None
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    for channel in rng.integers(3, size=6000):
        new, log_ratio = jump({CHANNEL: int(channel)}, rng)
        counts[new[CHANNEL] if math.log(rng.random()) < log_ratio else channel] += 1
    assert np.all(np.abs(counts - 2000) < 4 * math.sqrt(6000 * (1 / 3) * (2 / 3))), counts
