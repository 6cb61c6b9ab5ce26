"""The split-merge jump between channels that differ by one π⁰ or one π⁺ π⁻ pair, or in the
hadrons' species: it keeps the visible momentum, undoes itself with its own log-ratio, and
leaves the prior invariant."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

import etalumis_core as et
from etalumis_core.engines.mh import MHController, _controlled_values
from etalumis_core.seeding import chunk_rng
from etalumis_toy_tau_decay import TauDecaySimulator, physics
from etalumis_toy_tau_decay.decay import (NumpySampler, ReplaySampler, decay_tau,
                                          tau_four_momentum)
from etalumis_toy_tau_decay.moves import CHANNEL, PX, PY, PZ
from etalumis_toy_tau_decay.splits import SplitMerge, _places, neighbours

JUMP = SplitMerge()


def placed_jump():
    """The jump with an event's deposits observed: it draws a new π⁰'s photon angles where
    these deposits are (see :mod:`.placing`)."""
    jump = SplitMerge()
    jump.observe(et.simulate(TauDecaySimulator(), seed=3).result["calorimeter"])
    return jump


PLACED = placed_jump()


def prior_draw(rng, channels, probs):
    p = rng.uniform([-3, -3, 43], [3, 3, 47])
    channel = int(rng.choice(channels, p=probs))
    recorder = NumpySampler(rng, record=True)
    decay_tau(tau_four_momentum(*p), channel, recorder)
    return {PX: p[0], PY: p[1], PZ: p[2], CHANNEL: channel, **recorder.values}


def log_prior(values, channels, probs):
    """log p of a trace's draws under the prior restricted to ``channels``."""
    if not all(abs(values[k]) <= 3 for k in (PX, PY)) or not 43 <= values[PZ] <= 47:
        return -math.inf
    channel = int(values[CHANNEL])
    if channel not in channels:
        return -math.inf
    total = math.log(probs[list(channels).index(channel)])
    for key in values:
        if "_cos_theta__" in key:
            total -= math.log(2.0)
        elif "_phi__" in key:
            total -= math.log(2.0 * math.pi)
        elif "_bw_mass__" in key:
            r = physics.CHANNELS[channel].resonance
            lo = sum(physics.mass(p) for p in r.daughters)
            cdf = lambda m: 0.5 + math.atan((m - r.mass) / (0.5 * r.width)) / math.pi  # noqa: E731
            total -= math.log(cdf(physics.TAU_MASS) - cdf(lo))
    return total


def primaries(values):
    channel = int(values[CHANNEL])
    return JUMP.layouts[channel].primaries(values)


def test_neighbours_differ_by_one_pi0_or_in_hadron_species_and_are_mutual():
    near = neighbours(True)
    assert set(near[4]) == {9, 10, 23} and set(near[10]) == {4, 15, 24, 33} and 2 not in near
    assert set(near[11]) == {14, 16, 19, 20, 21, 22} and set(near[23]) == {4, 28, 33, 37}
    assert 0 not in near and 29 not in near and 32 not in near
    pairs = ({physics.PI0: 1}, {physics.PIP: 1, physics.PIM: 1})

    def kinds(c):
        return Counter("pi0" if p == physics.PI0 else "hadron" if physics.is_hadron(p) else p
                      for p in physics.CHANNELS[c].daughters)

    for c, others in near.items():
        for d in others:
            assert c in near[d]
            diff = Counter(physics.CHANNELS[c].daughters)
            diff.subtract(physics.CHANNELS[d].daughters)
            diff = {k: abs(v) for k, v in diff.items() if v}
            assert diff in pairs or kinds(c) == kinds(d)


@pytest.mark.parametrize("channel,new,jump", [
    (4, 10, JUMP), (10, 4, JUMP), (23, 33, JUMP), (24, 34, JUMP), (4, 23, JUMP),
    (33, 10, JUMP), (11, 19, JUMP), (15, 10, JUMP), (12, 17, JUMP), (5, 7, JUMP),
    (4, 10, PLACED), (24, 10, PLACED), (23, 33, PLACED)])
def test_the_jump_keeps_the_visible_momentum_and_undoes_itself(channel, new, jump):
    """A jump that the jump draws, and the choice that undoes it (the same places, the
    dropped loops' places, and what a merge took apart: a merge's photon angles are the
    split's, a split's the merged π⁰'s), also with the photons placed where an event's
    deposits are."""
    sim = TauDecaySimulator()
    rng = np.random.default_rng(channel)
    done = None
    while done is None or done[0][CHANNEL] != new:
        values = prior_draw(rng, [channel], [1.0])
        drawn = {}
        apply = jump.apply
        jump.apply = lambda v, choice, r, **kw: drawn.setdefault("done", apply(v, choice, r, **kw))
        try:
            jump(values, rng)
        finally:
            jump.apply = apply
        done = drawn.get("done")
    new_values, log_ratio, _, reverse = done
    before, after = primaries(values), primaries(new_values)
    if _places(channel, new)[1] == "species":   # what the calorimeter sees stays
        direction = lambda p: p[:-1, 1:] / np.linalg.norm(p[:-1, 1:], axis=1)[:, None]  # noqa: E731
        np.testing.assert_allclose(np.sort(before[:-1, 0]), np.sort(after[:-1, 0]), atol=1e-9)
        assert np.isclose(direction(before) @ direction(after).T, 1.0, atol=1e-12).sum() == len(
            before) - 1
    else:
        np.testing.assert_allclose(before[:-1, 1:].sum(axis=0), after[:-1, 1:].sum(axis=0),
                                   atol=1e-9)   # the visible 3-momentum stays
    # The simulator runs the new trace from the jump's values alone.
    trace = et.simulate(sim, seed=0)
    controller = MHController(chunk_rng(0, 0), {"calorimeter": trace.result["calorimeter"]})
    controller.previous = new_values
    replayed = et.run_trace(sim, controller)
    if all(abs(new_values[k]) <= 3 for k in (PX, PY)) and 43 <= new_values[PZ] <= 47:
        assert all(v.reused for v in replayed.variables if v.kind == "sample" and v.control)
        assert set(_controlled_values(replayed)) == set(new_values)
    values_back, log_back, _, _ = jump.apply(new_values, reverse, np.random.default_rng(1))
    assert set(values_back) == set(values)
    for key, value in values.items():
        if "_genbod_mass__" not in key:   # drawn in a random order
            assert values_back[key] == pytest.approx(value, abs=1e-9), key
    np.testing.assert_allclose(primaries(values_back), before, atol=1e-9)
    assert log_back == pytest.approx(-log_ratio, abs=1e-8)


def log_orders(channel):
    """log k! of the k mass uniforms of the channel's phase-space loop."""
    layout = JUMP.layouts[channel]
    n = layout.inner if layout.resonance is not None else len(layout.masses)
    return math.lgamma(n - 1)


@pytest.mark.parametrize("channel,new", [(4, 10), (10, 24), (23, 33), (24, 34), (4, 23),
                                         (10, 33), (11, 14), (4, 9), (13, 18)])
def test_the_jacobian_is_the_determinant_of_the_map(channel, new, log_det):
    """The map from the old draws and the numbers a split draws (the new momenta, a new π⁰'s
    photon angles, the new loops' places) to the new draws and the places of the loops that
    only the old channel has has the log-Jacobian that the ratio uses. (A merge is the
    inverse map: the reverse test checks its ratio.)"""
    rng = np.random.default_rng(100 * channel + new)
    _, kind, _ = _places(channel, new)
    loops = JUMP.layouts[new].loops - JUMP.layouts[channel].loops
    choice = {"new": new, "pair": [0, 1], "single": 0, "plus": 0,
              "fresh": [0.3] * max(loops, 0)}
    if kind == "species":   # each hadron takes the momentum of the one after it
        hadrons = len(_places(channel, new)[2]["order"])
        choice["order"] = [(i + 1) % hadrons for i in range(hadrons)]
    while True:
        values = prior_draw(rng, [channel], [1.0])
        if JUMP._read(values) is None:
            continue   # a loop tried more than once: the jump leaves it
        k = JUMP._read(values)[1][_places(channel, new)[2].get("single", [0])[0], 1:]
        choice["momentum"] = list((k / 3 + rng.normal(0.0, 0.1, (2, 3))).ravel()[
            :{"pi0": 3, "charged": 6}.get(kind, 0)])
        choice["angles"] = (0.2, 1.0, -0.3, 2.0)
        if JUMP.apply(values, choice, np.random.default_rng(0)) is not None:
            break
    old_keys = sorted(k for k in values if k != CHANNEL)
    new_values = JUMP.apply(values, choice, np.random.default_rng(0))[0]
    new_keys = sorted(k for k in new_values if k != CHANNEL)
    drawn = len(choice["momentum"])
    angles = 4 if kind == "pi0" else 0
    single = _places(channel, new)[2].get("single", [None])[choice["single"]]

    def mapped(x):
        given = {**values, **dict(zip(old_keys, x[:len(old_keys)]))}
        rest = list(x[len(old_keys):])
        aux = {**choice, "momentum": rest[:drawn], "angles": tuple(rest[drawn:drawn + angles]),
               "fresh": rest[drawn + angles:]}
        out, _, log_map, _ = JUMP.apply(given, aux, np.random.default_rng(0))
        # What the reverse would draw: the merged π⁰'s photon angles, the places of the loops
        # the new channel lacks.
        read = JUMP._read(given)
        reverse = list(read[3][single] if angles else ()) + read[2][JUMP.layouts[new].loops:]
        return np.array([out[k] for k in new_keys] + reverse), log_map

    x0 = np.array([values[k] for k in old_keys] + choice["momentum"]
                  + list(choice["angles"] if angles else ()) + choice["fresh"])
    image, log_map = mapped(x0)
    assert len(image) == len(x0)
    # The ratio also holds the orders of the mass uniforms (k! of them, one drawn here): not
    # part of the map.
    orders = log_orders(new) - log_orders(channel)
    assert log_map - orders == pytest.approx(log_det(mapped, x0, 1e-6), abs=1e-4)
    assert abs(log_map) > 1e-3   # ten times the tolerance: a Jacobian that is not 1


@pytest.mark.parametrize("channels,jump", [
    ((4, 10, 24), JUMP), ((4, 10, 23, 33), JUMP), ((11, 14, 19), JUMP),
    ((2, 4, 9, 10), TauDecaySimulator().jumps()[0])], ids=["pi0", "both", "species", "all"])
def test_the_jump_leaves_the_prior_invariant(channels, jump):
    """Metropolis-Hastings with the jump alone, no likelihood, on prior draws of channels at
    equal odds (τ → ρ ν, a₁ ν (π⁻ π⁰ π⁰) and π⁻ 3π⁰ ν; ρ ν, a₁ ν (π⁻ π⁰ π⁰), π⁺ π⁻ π⁻ π⁰ ν and
    π⁻ π⁻ π⁺ π⁰ π⁰ ν; a₁ ν (π⁺ π⁻ π⁻), K⁻ π⁺ π⁻ ν and π⁻ K_S K_L ν): the channel shares, the π⁰
    energy, the visible mass and the most energetic hadron's energy (π⁰ aside) of each channel
    and the tau momentum stay the prior's (without the k! of the mass uniforms' order in the
    ratio, the first group's channel shares fail the test; a missing 1/(2E) or accept level
    fails the Jacobian test above). The simulator's jumps as one keep it too (``all``: π⁻ ν
    has the swap alone, a₁ ν (π⁻ π⁰ π⁰) the split-merge alone, ρ ν and K*⁻ ν both)."""
    probs = [1 / len(channels)] * len(channels)
    rng = np.random.default_rng(5)
    moved, accepted, tried = [], 0, 0
    for _ in range(3000):
        values = prior_draw(rng, channels, probs)
        for _ in range(4):
            proposal = jump(values, rng)
            if proposal is None:
                continue
            tried += 1
            new, log_ratio = proposal
            log_alpha = (log_prior(new, channels, probs) - log_prior(values, channels, probs)
                         + log_ratio)
            if math.log(rng.random()) < log_alpha:
                values, accepted = new, accepted + 1
        moved.append(values)
    assert accepted > 200
    shares = Counter(int(v[CHANNEL]) for v in moved)
    share = 1 / len(channels)
    for c in channels:
        assert abs(shares[c] - 3000 * share) < 4 * math.sqrt(3000 * share * (1 - share)), shares
    rng6 = np.random.default_rng(6)
    fresh = [prior_draw(rng6, channels, probs) for _ in range(3000)]

    def measures(sample, channel):
        """Per trace of ``channel``: the π⁰ energy, the visible system's mass, the most
        energetic hadron's energy (π⁰ aside)."""
        daughters = physics.CHANNELS[channel].daughters
        spots = [i for i, d in enumerate(daughters) if d == physics.PI0]
        hadrons = [i for i, d in enumerate(daughters)
                   if d != physics.PI0 and physics.is_hadron(d)]
        out = []
        for v in sample:
            if int(v[CHANNEL]) == channel:
                event = decay_tau(tau_four_momentum(v[PX], v[PY], v[PZ]), channel,
                                  ReplaySampler(v), decay_pi0=False)
                p = np.array([x.p4 for x in event.final_state])
                visible = p[:-1].sum(axis=0)
                out.append((float(p[spots, 0].sum()),
                            math.sqrt(visible[0] ** 2 - visible[1:] @ visible[1:]),
                            float(p[hadrons, 0].max())))
        return np.array(out)

    for c in channels:
        after, prior = measures(moved, c), measures(fresh, c)
        for i in range(3):
            assert stats.ks_2samp(after[:, i], prior[:, i]).pvalue > 1e-3, (c, i)
    for key, (low, high) in ((PX, (-3, 3)), (PY, (-3, 3)), (PZ, (43, 47))):
        sample = np.array([v[key] for v in moved])
        assert stats.kstest(sample, stats.uniform(low, high - low).cdf).pvalue > 1e-3, key


def test_counts_off_the_calorimeter_grid_leave_the_photon_angles_to_their_prior():
    jump = SplitMerge()
    jump.observe(np.ones((35, 35)))
    assert jump.observed is None
    jump.observe(np.ones((35, 35, 20)))
    assert jump.observed.shape == (35, 35) and jump.observed[0, 0] == 20
    jump.observe(None)
    assert jump.observed is None
