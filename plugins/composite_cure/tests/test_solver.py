"""Verification of the cure solver: material numbers, convergence order, analytic steady states,
energy balances and the kinetics against an accurate ODE integration."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from etalumis_composite_cure import AS4_8552, HEXCEL_8552, INVAR, CureSolver, one_hold_cycle
from etalumis_composite_cure.materials import T_REF

CYCLE_S = 222 * 60.0


def constant(value):
    return lambda t: np.full(np.shape(t), float(value))


# ------------------------------------------------------------------ material numbers
def test_derived_material_numbers():
    m = AS4_8552
    assert m.density == pytest.approx(1581.26, abs=0.01)
    assert m.specific_heat(100.0) == pytest.approx(1080.2, abs=0.1)
    assert m.conductivity(100.0, 0.5) == pytest.approx(0.639, abs=0.0015)
    assert m.diffusivity(100.0, 0.5) == pytest.approx(3.74e-7, rel=0.005)
    assert m.adiabatic_rise(100.0) == pytest.approx(175.0, abs=0.5)
    assert INVAR.diffusivity_constant == pytest.approx(3.13e-6, rel=0.005)
    np.testing.assert_allclose(HEXCEL_8552.critical_cure([120.0, 150.0, 180.0]),
                               [0.47, 0.63, 0.80], atol=0.005)


def test_springer_tsai_limits():
    # equal fibre and resin conductivities: the composite conducts like either phase
    # (B = 0 exactly is a removable singularity of the formula, so step just beside it)
    same = dataclasses.replace(AS4_8552, k_fibre0=0.2002, k_fibreT=0.0, k_resin0=0.2, k_resinT=0.0,
                               k_resin_alpha=0.0)
    assert same.conductivity(50.0, 0.3) == pytest.approx(0.2, rel=1e-3)
    # highly conducting fibres raise k_c well above the resin's, far below the fibre's
    assert 2.0 < AS4_8552.conductivity(100.0, 0.5) / AS4_8552.resin_conductivity(100.0, 0.5) < 4.0


# ------------------------------------------------------------------ convergence order
def _mid_histories(result):
    # temperature (K) at mid-thickness and the tool interface, and degree of cure (percent)
    return np.concatenate([result.at_depth([0.015, 0.03]).ravel(),
                           100.0 * result.cure_at_depth(0.015)])


def _observed_order(values):
    e1 = np.abs(values[0] - values[1]).max()
    e2 = np.abs(values[1] - values[2]).max()
    return np.log2(e1 / e2), e2


def test_time_step_refinement_is_second_order():
    # Crank–Nicolson + linearised trapezoidal kinetics: order 2.  Differences at a fixed grid
    # isolate the time error; the cycle's kinks fall on step boundaries for every dt used.
    solver = CureSolver(n_laminate=20, n_tool=6)
    runs = [_mid_histories(solver.run(one_hold_cycle(), CYCLE_S, dt=dt, record_every=int(120 // dt)))
            for dt in (120.0, 60.0, 30.0)]
    order, err = _observed_order(runs)
    assert abs(order - 2.0) < 0.3, order
    assert err < 0.1  # K (or percent cure) between dt = 60 s and 30 s


def test_top_face_time_error_is_small():
    # Crank–Nicolson is A- but not L-stable: at the cycle's kinks the thin top half-cell rings
    # for a few steps (about 0.1 K at dt = 60 s, every step recorded), so the face reaches its
    # asymptotic order 2 only for dt <= 30 s; the error is still far below thermocouple noise
    solver = CureSolver(n_laminate=20, n_tool=6)
    top = [solver.run(one_hold_cycle(), CYCLE_S, dt=dt, record_every=int(60 // dt)).at_depth(0.0)
           for dt in (60.0, 30.0)]
    assert np.abs(top[0] - top[1]).max() < 0.2


def test_grid_refinement_is_second_order():
    # the vertex-centred finite-volume grid nests, so halving the cells keeps every old node
    runs = []
    for nl, nt in ((10, 6), (20, 12), (40, 24)):
        r = CureSolver(n_laminate=nl, n_tool=nt).run(one_hold_cycle(), CYCLE_S, dt=60.0,
                                                     record_every=2)
        runs.append(_mid_histories(r))
    order, err = _observed_order(runs)
    assert abs(order - 2.0) < 0.3, order
    assert err < 0.1


# ------------------------------------------------------------------ steady states (no reaction)
def test_uniform_steady_state_with_unequal_htc():
    solver = CureSolver()
    r = solver.run(constant(150.0), 30 * 3600.0, dt=120.0, h_top=120.0, h_bottom=70.0,
                   reaction=False, record_every=900)
    np.testing.assert_allclose(r.final_temperature, 150.0, atol=1e-6)


def test_series_resistance_steady_state_constant_properties():
    # different air temperatures below and above: the exact answer is piecewise linear with the
    # heat flux set by the series resistances, which the vertex-centred scheme reproduces exactly
    lam = dataclasses.replace(AS4_8552, cp_resin1=0.0, cp_fibre1=0.0, k_resinT=0.0,
                              k_resin_alpha=0.0, k_fibreT=0.0)
    solver = CureSolver(0.030, 0.020, 12, 4, composite=lam)
    ta, tb, ht, hb = 180.0, 40.0, 120.0, 70.0
    r = solver.run(constant(ta), 40 * 3600.0, dt=120.0, h_top=ht, h_bottom=hb, reaction=False,
                   air_temperature_bottom=constant(tb), record_every=1200)
    k_l = float(lam.conductivity(0.0, 0.0))
    q = (ta - tb) / (1 / ht + 0.030 / k_l + 0.020 / INVAR.conductivity_constant + 1 / hb)
    t_bottom = tb + q / hb
    t_interface = t_bottom + q * 0.020 / INVAR.conductivity_constant
    z = solver.z
    exact = np.where(z <= 0.020, t_bottom + q * z / INVAR.conductivity_constant,
                     t_interface + q * (z - 0.020) / k_l)
    np.testing.assert_allclose(r.final_temperature, exact, atol=1e-6)


def test_prescribed_temperature_steady_state_matches_kirchhoff_transform():
    # with k = k(T) the steady profile is not linear; the Kirchhoff potential ∫k dT is.
    alpha = 0.5
    lam = AS4_8552
    t_bot, t_top, L = 60.0, 180.0, 0.030

    def potential(T):
        Ts = np.linspace(t_bot, T, 401)
        return np.trapezoid(lam.conductivity(Ts, alpha), Ts)

    total = potential(t_top)

    def exact(z):
        return brentq(lambda T: potential(T) - total * z / L, t_bot, t_top, xtol=1e-12)

    errors = []
    for n in (8, 16):
        solver = CureSolver(L, 0.0, n, 0)
        air_top, air_bot = constant(t_top), constant(t_bot)
        r = solver.run(air_top, 20 * 3600.0, dt=60.0, reaction=False, alpha0=alpha,
                       bc_top="prescribed", bc_bottom="prescribed", air_temperature_bottom=air_bot,
                       T0=np.linspace(t_bot, t_top, n + 1), record_every=1200)
        ref = np.array([exact(z) for z in solver.z])
        errors.append(np.abs(r.final_temperature - ref).max())
    assert errors[1] < 0.02  # K
    assert abs(np.log2(errors[0] / errors[1]) - 2.0) < 0.3  # second order in space


# ------------------------------------------------------------------ energy balances
def test_energy_balance_without_reaction():
    # heat in through the faces (trapezoidal integral of h (T_air - T_face) over the recorded
    # histories) equals the change of stored enthalpy computed from the temperature field
    solver = CureSolver()
    cycle = one_hold_cycle()
    r = solver.run(cycle, CYCLE_S, dt=30.0, h_top=120.0, h_bottom=70.0, reaction=False)
    air = cycle(r.times)
    flux = 120.0 * (air - r.temperature[:, -1]) + 70.0 * (air - r.temperature[:, 0])
    heat_in = np.trapezoid(flux, r.times)
    stored = solver.stored_energy(r.final_temperature) - solver.stored_energy(r.temperature[0])
    assert heat_in > 1e6  # J/m²: a meaningful amount of heat went in
    assert stored == pytest.approx(heat_in, rel=1e-4)
    # the solver's own bookkeeping is exact to round-off
    assert r.stored_energy_change == pytest.approx(stored, rel=1e-12)
    assert r.heat_in == pytest.approx(stored, rel=1e-10)


def test_adiabatic_heat_release_equals_heat_of_reaction():
    # insulated faces: the stored enthalpy rises by exactly H_r x resin mass x Δα
    solver = CureSolver()
    T0 = np.linspace(140.0, 170.0, solver.n_nodes)  # non-uniform, so that heat also flows
    r = solver.run(constant(0.0), 3 * 3600.0, dt=60.0, h_top=0.0, h_bottom=0.0, T0=T0)
    comp = AS4_8552
    resin_mass = comp.rho_resin * comp.resin_fraction * solver.laminate_volume[solver.n_tool:]
    released = comp.heat_of_reaction * np.sum(resin_mass * (r.final_cure - 0.05))
    stored = solver.stored_energy(r.final_temperature) - solver.stored_energy(T0)
    assert released > 1e6
    assert stored == pytest.approx(released, rel=1e-10)
    assert r.heat_in == 0.0


def test_adiabatic_uniform_laminate_matches_ode():
    # a uniform insulated laminate is one adiabatic reactor: dα/dt = r(α, T), with T from the
    # enthalpy balance ∫ρc dT = ρ_r (1-V_f) H_r (α - α0); integrate it accurately with Radau
    comp = AS4_8552
    q0, q1 = comp.heat_capacity_coefficients()
    T_start, a0 = 130.0, 0.05

    def temperature(alpha):
        H = q0 * (T_start - T_REF) + 0.5 * q1 * (T_start - T_REF) ** 2 + comp.heat_release * (alpha - a0)
        return T_REF + 2 * H / (q0 + np.sqrt(q0 * q0 + 2 * q1 * H))

    duration = 2 * 3600.0
    solver = CureSolver(0.010, 0.0, 4, 0)
    errs = []
    for dt in (20.0, 10.0):
        r = solver.run(constant(0.0), duration, dt=dt, h_top=0.0, h_bottom=0.0, T0=T_start,
                       alpha0=a0)
        sol = solve_ivp(lambda t, a: HEXCEL_8552.rate(a, temperature(a)), (0, duration), [a0],
                        t_eval=r.times, method="Radau", rtol=1e-11, atol=1e-13)
        errs.append(np.abs(r.temperature[:, 2] - temperature(sol.y[0])).max())
    # the adiabatic runaway reaches ~270 °C; the thermal runaway is the hardest case for the step
    assert r.final_temperature.max() > 250.0
    assert errs[1] < 0.5  # K
    assert abs(np.log2(errs[0] / errs[1]) - 2.0) < 0.3


def test_isothermal_hold_matches_ode():
    # 180 °C, 2 h, α0 = 0.05: faces held at 180 °C, heat release switched off so that the
    # laminate stays exactly isothermal; the solver's α must match an accurate ODE solution
    solver = CureSolver(0.002, 0.0, 2, 0)
    sol_alpha = None
    errs = []
    for dt in (60.0, 30.0):
        r = solver.run(constant(180.0), 7200.0, dt=dt, T0=180.0, heat_release=False,
                       bc_top="prescribed", bc_bottom="prescribed")
        np.testing.assert_allclose(r.temperature, 180.0)
        sol = solve_ivp(lambda t, a: HEXCEL_8552.rate(a, 180.0), (0.0, 7200.0), [0.05],
                        t_eval=r.times, method="Radau", rtol=1e-11, atol=1e-13)
        sol_alpha = sol.y[0]
        errs.append(np.abs(r.cure[:, 1] - sol_alpha).max())
    assert sol_alpha[-1] == pytest.approx(0.82, abs=0.01)  # SIMULATORS.md §2.2
    assert errs[1] < 5e-4
    assert abs(np.log2(errs[0] / errs[1]) - 2.0) < 0.3


def test_benchmark_cycle_shows_exotherm_and_cures():
    r = CureSolver().run(one_hold_cycle(), CYCLE_S, dt=60.0, record_every=5)
    mid_peak = r.peak_at_depth(0.015)
    assert 185.0 < mid_peak < 215.0  # a 30 mm part overshoots the 180 °C air
    assert r.cure_at_depth(0.015)[-1] > 0.8
    assert np.all(np.diff(r.cure, axis=0) >= -1e-12)  # cure never reverses


def test_interpolation_and_validation():
    solver = CureSolver()
    idx, w = solver.interpolation([0.0, 0.015, 0.030, 0.050])
    np.testing.assert_allclose(solver.z[idx] + w * (solver.z[idx + 1] - solver.z[idx]),
                               [0.05, 0.035, 0.02, 0.0], atol=1e-15)
    with pytest.raises(ValueError):
        solver.interpolation(0.06)
    with pytest.raises(ValueError):
        solver.run(one_hold_cycle(), 100.0, dt=60.0)
