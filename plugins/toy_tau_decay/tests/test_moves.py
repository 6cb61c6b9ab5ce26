"""The tau-momentum moves: they keep every visible particle in place, undo themselves with the
reversed auxiliary number, carry the right Jacobian, and leave the prior invariant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import etalumis_core as et
from etalumis_core.seeding import chunk_rng
from etalumis_core.engines.mh import MHController, _controlled_values
from etalumis_toy_tau_decay import TauDecaySimulator, physics
from etalumis_toy_tau_decay.decay import _bw_cdf, _genbod_point, phase_space_bound
from etalumis_toy_tau_decay.moves import CHANNEL, PX, PY, PZ, TauMomentumMoves, _direction

MOVES = TauMomentumMoves()


class Fixed:
    """Stands in for the generator: the move's auxiliary number is given."""

    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, low: float, high: float) -> float:
        return self.value

    def normal(self, mean: float, stddev: float) -> float:
        return self.value


@pytest.fixture(scope="module")
def sim():
    return TauDecaySimulator()


def event(sim, channel: int):
    seed = 0
    while True:
        trace = et.simulate(sim, seed=seed)
        if trace.result["channel"] == channel:
            return trace
        seed += 1


def replay(sim, values, observed):
    controller = MHController(chunk_rng(0, 0), {"calorimeter": observed})
    controller.previous = values
    return et.run_trace(sim, controller)


@pytest.mark.parametrize("channel,resonances", [
    (0, True), (1, True), (2, True), (4, True), (9, True), (11, True), (23, True), (24, True),
    (4, False)], ids=["e nu nu", "mu nu nu", "pi nu", "rho nu", "K* nu", "a1 nu",
                      "3 prong pi0", "pi 3 pi0", "pi pi0 nu phase space"])
@pytest.mark.parametrize("move,aux", [("rotate", 2.1), ("rescale", 0.8)])
def test_a_move_keeps_the_visible_event_and_undoes_itself(sim, channel, resonances, move, aux):
    if not resonances:
        sim = TauDecaySimulator(resonances=False)
    moves = TauMomentumMoves(resonances)
    truth = event(sim, channel)
    values = _controlled_values(truth)
    observed = truth.result["calorimeter"]
    if physics.CHANNELS[channel].leptonic:
        # Without the cone, a tau turned about the lepton or shifted in every component
        # soon leaves the prior's box: smaller steps.
        aux /= 7.0
    in_box = lambda v: 43.0 < v[PZ] < 47.0 and abs(v[PX]) < 3.0 and abs(v[PY]) < 3.0  # noqa: E731
    # the first of these steps that stays inside the prior's box (engines reject the others)
    aux = next(a for a in (aux, -aux, aux / 2, -aux / 2)
               if in_box(getattr(moves, move)(values, Fixed(a))[0]))
    new, log_jacobian = getattr(moves, move)(values, Fixed(aux))
    if move == "rotate":
        assert math.hypot(new[PX], new[PY], new[PZ]) == pytest.approx(
            math.hypot(values[PX], values[PY], values[PZ]), rel=1e-12)
    moved = {**values, **new}
    assert math.dist([moved[PX], moved[PY], moved[PZ]], [values[PX], values[PY], values[PZ]]) > 0.05
    before, after = replay(sim, values, observed), replay(sim, moved, observed)
    np.testing.assert_allclose(after.result["calorimeter_expected"],
                               before.result["calorimeter_expected"], rtol=0,
                               atol=1e-12 / 0.005)   # 1e-12 GeV, in 5 MeV deposits
    assert after.log_likelihood == pytest.approx(before.log_likelihood, abs=1e-6)
    assert after.result["e_visible"] == pytest.approx(before.result["e_visible"], rel=1e-11)
    assert after.result["e_tau"] != pytest.approx(before.result["e_tau"], rel=1e-9) or move == "rotate"
    back, log_back = getattr(moves, move)(moved, Fixed(-aux))
    for address, value in back.items():
        assert value == pytest.approx(values[address], abs=1e-9)
    assert log_back == pytest.approx(-log_jacobian, abs=1e-9)


LEPTONIC_ANGLES = [f"tau_c00_genbod_dir_{a}__Uniform__{i}" for i in (1, 2)
                   for a in ("cos_theta", "phi")]
ANGLES = {0: LEPTONIC_ANGLES,
          4: ["tau_c04_cos_theta__Uniform__1", "tau_c04_phi__Uniform__1"],
          23: [f"tau_c23_genbod_dir_{a}__Uniform__{i}" for i in (1, 2, 3, 4)
               for a in ("cos_theta", "phi")]}


@pytest.mark.parametrize("channel,move,aux", [
    (4, "rotate", 1.3), (4, "rescale", 0.7), (4, "rescale", -1.5),
    (0, "rotate", 1.3), (0, "rotate", -2.4), (0, "rescale", 0.2), (0, "rescale", -0.15),
    (23, "rotate", 0.4), (23, "rescale", 0.6), (23, "rescale", -0.9)])
def test_the_jacobian_is_the_determinant_of_the_map(sim, channel, move, aux, log_det):
    """In the decay's own coordinates: the tau momentum and every direction the move sets
    (for tau -> 3 prong pi0, the four directions of its phase-space decay)."""
    values = _controlled_values(event(sim, channel))
    keys = [PX, PY, PZ] + ANGLES[channel]

    def mapped(x):
        new, log_jacobian = getattr(MOVES, move)({**values, **dict(zip(keys, x))}, Fixed(aux))
        assert set(new) == set(keys)
        return np.array([new[k] for k in keys]), log_jacobian

    x0 = np.array([values[k] for k in keys])
    assert mapped(x0)[1] == pytest.approx(log_det(mapped, x0, 1e-6), abs=1e-5)
    if move == "rescale":
        assert abs(mapped(x0)[1]) > 0.01   # a Jacobian that is not 1 was tested


def prior_draws(n, rng):
    """(px, py, pz, rho mass, decay angles) of tau -> rho nu from the priors, by address."""
    rho = physics.CHANNELS[4].resonance
    lo = sum(physics.mass(p) for p in rho.daughters)
    c = rng.uniform(_bw_cdf(lo, rho.mass, rho.width), _bw_cdf(physics.TAU_MASS, rho.mass, rho.width), n)
    columns = {PX: rng.uniform(-3, 3, n), PY: rng.uniform(-3, 3, n), PZ: rng.uniform(43, 47, n),
               "tau_c04_bw_mass__Uniform__1": c,
               "tau_c04_cos_theta__Uniform__1": rng.uniform(-1, 1, n),
               "tau_c04_phi__Uniform__1": rng.uniform(0, 2 * math.pi, n)}
    return [{CHANNEL: 4, **{k: float(v[i]) for k, v in columns.items()}} for i in range(n)]


def leptonic_prior_draws(n, rng):
    """(px, py, pz, (e nu_tau) mass uniform, decay directions) of tau -> e nu nu from the
    priors: the mass uniform accepted with the decay's own weight and bound."""
    channel = physics.CHANNELS[0]
    masses = tuple(float(m) for m in channel.masses)
    bound = phase_space_bound(physics.TAU_MASS, masses, True)
    draws = []
    while len(draws) < n:
        u = float(rng.uniform())
        if rng.uniform() * bound >= _genbod_point(physics.TAU_MASS, masses, [u], True)[1]:
            continue
        cos1, cos2, phi1, phi2 = rng.uniform(-1, 1, 2).tolist() + rng.uniform(0, 2 * math.pi, 2).tolist()
        draws.append({CHANNEL: 0, PX: float(rng.uniform(-3, 3)), PY: float(rng.uniform(-3, 3)),
                      PZ: float(rng.uniform(43, 47)), "tau_c00_genbod_mass__Uniform__1": u,
                      **dict(zip(LEPTONIC_ANGLES, (cos1, phi1, cos2, phi2)))})
    return draws


def run_moves(draws, rng, steps):
    in_box = lambda v: abs(v[PX]) <= 3 and abs(v[PY]) <= 3 and 43 <= v[PZ] <= 47  # noqa: E731
    out = []
    for values in draws:
        for _ in range(steps):
            proposal = (MOVES.rotate if rng.random() < 0.5 else MOVES.rescale)(values, rng)
            if proposal is None:
                continue
            new, log_jacobian = proposal
            moved = {**values, **new}
            if in_box(moved) and math.log(rng.random()) < log_jacobian:
                values = moved
        out.append(values)
    return out


@pytest.mark.parametrize("draw,angles", [
    (prior_draws, ["tau_c04_cos_theta__Uniform__1"]),
    (leptonic_prior_draws, LEPTONIC_ANGLES)], ids=["rho nu", "e nu nu"])
def test_the_moves_leave_the_prior_invariant(draw, angles):
    """Metropolis-Hastings with these moves alone, on prior draws with no likelihood, must keep
    the prior: uniform px, py, pz and decay angles (the moves carry the tau far: half the draws
    end more than half a GeV from where they started). The Jacobian itself is checked exactly
    above."""
    rng = np.random.default_rng(7)
    start = draw(3000, rng)
    moved = run_moves(start, rng, steps=10)
    travelled = [math.dist((a[PX], a[PY]), (b[PX], b[PY])) for a, b in zip(start, moved)]
    assert np.median(travelled) > 0.5
    ranges = {PX: (-3, 3), PY: (-3, 3), PZ: (43, 47)}
    for key in [PX, PY, PZ] + angles:
        low, high = ranges.get(key, (0, 2 * math.pi) if "phi" in key else (-1, 1))
        sample = np.array([v[key] for v in moved])
        assert stats.kstest(sample, stats.uniform(low, high - low).cdf).pvalue > 1e-3, key
    if draw is leptonic_prior_draws:
        # The Jacobian acts on the lepton's energy in the tau rest frame, which n1 . n2 sets
        # (given the mass): uniform under the prior; without the Jacobian p ~ 1e-6 here.
        directions = [[_direction(v[c], v[f]) for c, f in (LEPTONIC_ANGLES[:2],
                                                           LEPTONIC_ANGLES[2:])] for v in moved]
        cos12 = [float(n1 @ n2) for n1, n2 in directions]
        assert stats.kstest(cos12, stats.uniform(-1, 2).cdf).pvalue > 1e-3
