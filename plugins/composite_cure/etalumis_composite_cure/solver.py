"""Implicit finite-volume solver for the through-thickness cure of a laminate on a tool.

Geometry (z up): the tool occupies 0 <= z <= L_t, the laminate L_t <= z <= L_t + L_l.  Both exposed
faces exchange heat with the autoclave air by convection (or, as a test variant, have a prescribed
temperature).  The grid is vertex-centred: nodes sit on both faces and on the tool/laminate
interface, so surface and interface thermocouples read a node directly and the interface
conditions (continuity of T and of heat flux) hold by construction.  Each node owns half of each
adjacent cell.

One time step couples conduction and cure in a single linearly implicit step:

* conduction: Crank–Nicolson (trapezoidal) in time, properties k(T, α) and ρc(T) evaluated at a
  second-order extrapolation of the mid-step state, boundary air temperature averaged over the step;
* cure: a linearised trapezoidal (Rosenbrock, γ = 1/2) update of α in every laminate node, with the
  Jacobian of the rate with respect to both α and T, eliminated node by node into the conduction
  system so that one tridiagonal solve (LAPACK ``gtsv``) per step gives ΔT, then Δα;
* energy: the stored enthalpy of a node is a quadratic in T (ρc linear in T), so the new temperature
  is obtained by inverting the enthalpy exactly.  Heat in through the faces plus heat released by
  the reaction then equals the change in stored enthalpy to round-off, whatever the step.

The scheme is second order in time and space and A-stable; at dt = 60 s and ~20 cells a 222-minute
cycle costs a few milliseconds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.linalg import lapack

from .materials import AS4_8552, HEXCEL_8552, INVAR, KELVIN, T_REF, Composite, CureKinetics, Solid

log = logging.getLogger(__name__)

_gtsv = lapack.dgtsv

AirTemperature = Callable[[np.ndarray], np.ndarray]


@dataclass
class CureResult:
    """Histories recorded by :meth:`CureSolver.run` (rows are record times)."""

    times: np.ndarray  # (n_rec,) s
    temperature: np.ndarray  # (n_rec, n_nodes) °C
    cure: np.ndarray  # (n_rec, n_laminate_nodes) degree of cure of the laminate nodes
    air_temperature: np.ndarray  # (n_rec,) top-face air temperature °C
    peak_temperature: np.ndarray  # (n_nodes,) maximum over every time step
    peak_air_temperature: float  # maximum top-face air temperature over every time step
    heat_in: float  # J/m²: heat entering through the convective faces
    heat_released: float  # J/m²: heat released by the reaction
    stored_energy_change: float  # J/m²: change of stored enthalpy
    final_temperature: np.ndarray  # (n_nodes,) at t = duration
    final_cure: np.ndarray  # (n_laminate_nodes,) at t = duration
    solver: "CureSolver" = field(repr=False)

    def at_depth(self, depth: float | Sequence[float]) -> np.ndarray:
        """Temperature history at depth(s) below the laminate's top face, (n_rec,) or (n_rec, k)."""
        idx, w = self.solver.interpolation(depth)
        T = self.temperature
        return T[:, idx] * (1.0 - w) + T[:, idx + 1] * w

    def cure_at_depth(self, depth: float | Sequence[float]) -> np.ndarray:
        """Degree-of-cure history at depth(s) inside the laminate."""
        idx, w = self.solver.interpolation(depth)
        j = idx - self.solver.n_tool
        if np.any(j < 0) or np.any(j + (w > 0) > self.solver.n_laminate):
            raise ValueError("cure is defined only inside the laminate")
        a = self.cure
        j1 = np.minimum(j + 1, self.solver.n_laminate)
        return a[:, j] * (1.0 - w) + a[:, j1] * w

    def peak_at_depth(self, depth: float) -> float:
        idx, w = self.solver.interpolation(depth)
        p = self.peak_temperature
        return float(p[idx] * (1.0 - w) + p[idx + 1] * w)


class CureSolver:
    """Through-thickness conduction with cure in a laminate on a tool (see module docstring)."""

    def __init__(self, laminate_thickness: float = 0.030, tool_thickness: float = 0.020,
                 n_laminate: int = 20, n_tool: int = 6, composite: Composite = AS4_8552,
                 tool: Solid = INVAR, kinetics: CureKinetics = HEXCEL_8552) -> None:
        if n_laminate < 1 or laminate_thickness <= 0:
            raise ValueError("the laminate needs a positive thickness and at least one cell")
        if (tool_thickness > 0) != (n_tool > 0):
            raise ValueError("tool_thickness > 0 requires n_tool > 0 and vice versa")
        self.laminate_thickness = float(laminate_thickness)
        self.tool_thickness = float(tool_thickness)
        self.n_laminate = int(n_laminate)
        self.n_tool = int(n_tool)
        self.composite = composite
        self.tool = tool
        self.kinetics = kinetics

        nt, nl = self.n_tool, self.n_laminate
        self.n_nodes = nt + nl + 1
        dz_t = self.tool_thickness / nt if nt else 0.0
        dz_l = self.laminate_thickness / nl
        self.dz_tool, self.dz_laminate = dz_t, dz_l
        self.z = np.concatenate([np.arange(nt) * dz_t, self.tool_thickness + np.arange(nl + 1) * dz_l])
        self.total_thickness = self.tool_thickness + self.laminate_thickness
        self.depth = self.total_thickness - self.z  # below the laminate top face

        # per-area node capacities: rho c(T) dz = q0 + q1 (T - T_REF), half of each adjacent cell
        cq0, cq1 = composite.heat_capacity_coefficients()
        tq0, tq1 = tool.heat_capacity_coefficients()
        q0 = np.zeros(self.n_nodes)
        q1 = np.zeros(self.n_nodes)
        lam_vol = np.zeros(self.n_nodes)
        for c in range(nt):
            q0[c:c + 2] += 0.5 * tq0 * dz_t
            q1[c:c + 2] += 0.5 * tq1 * dz_t
        for c in range(nt, nt + nl):
            q0[c:c + 2] += 0.5 * cq0 * dz_l
            q1[c:c + 2] += 0.5 * cq1 * dz_l
            lam_vol[c:c + 2] += 0.5 * dz_l
        self.q0, self.q1 = q0, q1
        self.laminate_volume = lam_vol  # m³/m² of laminate owned by each node
        self.heat_release = composite.heat_release * lam_vol[nt:]  # J/m² per unit Δα
        self.tool_conductance = tool.conductivity() / dz_t if nt else 0.0

    # ------------------------------------------------------------------ helpers
    def interpolation(self, depth: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Left node index and linear weight for depth(s) below the laminate top face."""
        z = self.total_thickness - np.asarray(depth, dtype=float)
        if np.any(z < -1e-12) or np.any(z > self.total_thickness + 1e-12):
            raise ValueError(f"depth outside the stack [0, {self.total_thickness}] m: {depth}")
        idx = np.clip(np.searchsorted(self.z, z, side="right") - 1, 0, self.n_nodes - 2)
        w = np.clip((z - self.z[idx]) / (self.z[idx + 1] - self.z[idx]), 0.0, 1.0)
        return idx, w

    def stored_energy(self, T: np.ndarray) -> float:
        """Stored enthalpy per unit area relative to T_REF (J/m²)."""
        u = np.asarray(T, dtype=float) - T_REF
        return float(np.sum(self.q0 * u + 0.5 * self.q1 * u * u))

    # ------------------------------------------------------------------ time stepping
    def run(self, air_temperature: AirTemperature, duration: float, dt: float = 60.0,
            h_top: float = 120.0, h_bottom: float = 70.0, rate_factor: float = 1.0,
            T0: float | np.ndarray = 20.0, alpha0: float | np.ndarray = 0.05,
            record_every: int = 1, reaction: bool = True, heat_release: bool = True,
            bc_top: str = "convective", bc_bottom: str = "convective",
            air_temperature_bottom: AirTemperature | None = None) -> CureResult:
        """Integrate from t = 0 to ``duration`` (s) with fixed step ``dt`` (s).

        ``air_temperature(t)`` maps an array of times (s) to °C; the bottom face sees the same air
        unless ``air_temperature_bottom`` is given.  ``bc_*`` is ``"convective"`` (h = 0 is an
        insulated face) or ``"prescribed"`` (the face follows the air temperature exactly).
        ``reaction=False`` freezes α; ``heat_release=False`` keeps the kinetics but drops the
        source term (used to verify the kinetics under an exactly isothermal hold).
        States are recorded at t = 0 and every ``record_every`` steps; the final state is always
        available as ``final_temperature`` / ``final_cure``.
        """
        n_steps = int(round(duration / dt))
        if n_steps < 1 or abs(n_steps * dt - duration) > 1e-9 * max(duration, 1.0):
            raise ValueError(f"duration {duration} s is not a whole number of steps of {dt} s")
        if record_every < 1:
            raise ValueError("record_every must be a positive integer")
        for bc in (bc_top, bc_bottom):
            if bc not in ("convective", "prescribed"):
                raise ValueError(f"unknown boundary condition {bc!r}")
        kin, comp = self.kinetics, self.composite
        nt, nl, N = self.n_tool, self.n_laminate, self.n_nodes
        times = np.arange(n_steps + 1) * dt
        air_top = np.asarray(air_temperature(times), dtype=float)
        air_bot = air_top if air_temperature_bottom is None else np.asarray(
            air_temperature_bottom(times), dtype=float)
        air_top_l, air_bot_l = air_top.tolist(), air_bot.tolist()

        T = np.empty(N)
        T[:] = T0
        alpha = np.empty(nl + 1)
        alpha[:] = alpha0
        if bc_bottom == "prescribed":
            T[0] = air_bot_l[0]
        if bc_top == "prescribed":
            T[-1] = air_top_l[0]
        T_prev = T.copy()
        E_start = self.stored_energy(T)

        n_rec = n_steps // record_every + 1
        T_hist = np.empty((n_rec, N))
        a_hist = np.empty((n_rec, nl + 1))
        T_hist[0] = T
        a_hist[0] = alpha
        peak = T.copy()

        # constants hoisted out of the loop
        inv_dt = 1.0 / dt
        q0, q1 = self.q0, self.q1
        Q = self.heat_release if heat_release else np.zeros(nl + 1)
        E_over_R = kin.activation_energy / kin.R
        A = kin.A * rate_factor
        m, n, C = kin.m, kin.n, kin.C
        crit0 = kin.alpha_c0 + kin.alpha_ct * KELVIN  # critical cure written in °C
        crit1 = kin.alpha_ct
        C_crit1 = C * crit1
        kr0, krT, kra = comp.k_resin0, comp.k_resinT, comp.k_resin_alpha
        kf0, kfT = comp.k_fibre0, comp.k_fibreT
        s_st = float(np.sqrt(comp.fibre_fraction / np.pi))
        s_st2, one_m_2s = s_st * s_st, 1.0 - 2.0 * s_st
        inv_dzl = 1.0 / self.dz_laminate
        hb = float(h_bottom) if bc_bottom == "convective" else 0.0
        ht = float(h_top) if bc_top == "convective" else 0.0
        bot_dirichlet = bc_bottom == "prescribed"
        top_dirichlet = bc_top == "prescribed"
        G = np.empty(N + 1)  # conductances of the faces: [h_b, cells..., h_t]
        G[0], G[-1] = hb, ht
        G[1:nt + 1] = self.tool_conductance
        G_lam = G[nt + 1:N]
        G_cells = G[1:N]
        F = np.empty(N + 1)  # upward heat flux through each face at the start of the step
        lam = slice(nt, N)
        zeros_l = np.zeros(nl + 1)
        dalpha = zeros_l
        heat_in = 0.0
        heat_released = 0.0
        half_dt = 0.5 * dt
        rec = 1

        for k in range(n_steps):
            Tl = T[lam]
            # ---- cure rate and its Jacobian at the start of the step
            if reaction:
                Tk = Tl + KELVIN
                invT = 1.0 / Tk
                e = np.exp(C * (alpha - crit0 - crit1 * Tl))
                den = 1.0 + e
                r = (A * np.exp(-E_over_R * invT)) * (alpha ** m) * ((1.0 - alpha) ** n) / den
                s = e / den
                J_a = r * (m / alpha - n / (1.0 - alpha) - C * s)
                J_T = r * (E_over_R * invT * invT + C_crit1 * s)
                g = 1.0 / np.maximum(1.0 - half_dt * J_a, 0.25)  # floor: guards extreme priors
                gr = g * r
                a_mid = alpha + half_dt * r
            else:
                a_mid = alpha
            # ---- properties at the extrapolated mid-step state
            Ts = 1.5 * T - 0.5 * T_prev
            Tc = Ts[nt:N - 1] + Ts[nt + 1:N]
            ac = a_mid[:-1] + a_mid[1:]
            kr = kr0 + (0.5 * krT) * Tc + (0.5 * kra) * ac
            B = 2.0 * kr / (kf0 + (0.5 * kfT) * Tc) - 2.0
            root = np.sqrt(1.0 - s_st2 * B * B)
            G_lam[:] = kr * (one_m_2s + (np.pi - 4.0 / root * np.arctan(root / (1.0 + s_st * B))) / B) * inv_dzl
            Cn = q0 + q1 * (Ts - T_REF)
            # ---- assemble (C/dt + A/2) dT = -A T + s_bar [+ reaction terms]
            ab = 0.5 * (air_bot_l[k] + air_bot_l[k + 1])
            at = 0.5 * (air_top_l[k] + air_top_l[k + 1])
            F[0] = hb * (ab - T[0])
            F[-1] = -ht * (at - T[-1])
            F[1:N] = G_cells * (T[:-1] - T[1:])
            rhs = F[:-1] - F[1:]
            diag = Cn * inv_dt + 0.5 * (G[:-1] + G[1:])
            off = -0.5 * G_cells
            if reaction:
                QJ = Q * g
                rhs[lam] += QJ * r
                diag[lam] -= (0.5 * QJ) * J_T
            upper = off.copy()
            if bot_dirichlet:
                diag[0], upper[0], rhs[0] = 1.0, 0.0, air_bot_l[k + 1] - T[0]
            if top_dirichlet:
                diag[-1], off[-1], rhs[-1] = 1.0, 0.0, air_top_l[k + 1] - T[-1]
            dT = _gtsv(off, diag, upper, rhs, 1, 1, 1, 1)[3]
            # ---- energy bookkeeping uses the linear solution, consistent with the system
            dT0, dTN = float(dT[0]), float(dT[-1])
            heat_in += dt * (hb * (ab - T[0] - 0.5 * dT0) + ht * (at - T[-1] - 0.5 * dTN))
            dE = Cn * dT
            if reaction:
                dalpha = dt * gr + half_dt * g * J_T * dT[lam]
                a_new = np.clip(alpha + dalpha, 1e-12, 1.0 - 1e-9)
                da = a_new - alpha
                dE[lam] += Q * (da - dalpha)  # keep the enthalpy consistent if the clip acted
                heat_released += float(Q @ da)
                alpha = a_new
            # ---- exact inversion of the quadratic enthalpy
            u = T - T_REF
            H = q0 * u + 0.5 * q1 * u * u + dE
            T_prev = T
            T = T_REF + 2.0 * H / (q0 + np.sqrt(q0 * q0 + 2.0 * q1 * H))
            if bot_dirichlet:
                T[0] = air_bot_l[k + 1]
            if top_dirichlet:
                T[-1] = air_top_l[k + 1]
            np.maximum(peak, T, out=peak)
            if (k + 1) % record_every == 0:
                T_hist[rec] = T
                a_hist[rec] = alpha
                rec += 1

        E_change = self.stored_energy(T) - E_start
        return CureResult(times=times[::record_every][:n_rec], temperature=T_hist, cure=a_hist,
                          air_temperature=air_top[::record_every][:n_rec],
                          peak_temperature=peak,
                          peak_air_temperature=float(air_top.max()), heat_in=heat_in,
                          heat_released=heat_released, stored_energy_change=E_change,
                          final_temperature=T, final_cure=alpha, solver=self)
