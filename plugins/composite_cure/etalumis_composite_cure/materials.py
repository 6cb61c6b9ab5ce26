"""Material data for an AS4/8552 laminate cured on an Invar tool.

All temperatures passed to these functions are in degrees Celsius unless a name says ``_kelvin``;
the kinetics take kelvin because the Arrhenius law and the critical degree of cure are written in
kelvin in the published model.  Every property that the solver needs is exposed in a form the
solver can evaluate with a handful of vectorised numpy calls:

* volumetric heat capacity as ``rho*c(T) = q0 + q1*(T - T_REF)`` (linear in T, so that the stored
  enthalpy is a quadratic and can be inverted exactly, which keeps the scheme energy-conservative);
* conductivity as a function of (T, alpha);
* heat released per unit volume of laminate per unit degree of cure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Reference temperature (°C) about which the linear specific heats are written.
T_REF: float = 20.0
#: Offset between Celsius and kelvin.
KELVIN: float = 273.15


@dataclass(frozen=True)
class CureKinetics:
    """Modified autocatalytic (Hubert–Johnston) cure kinetics.

    dα/dt = K(T) α^m (1-α)^n / (1 + exp(C (α - (α_C0 + α_CT T)))),  K = A exp(-ΔE / (R T)),
    with T in kelvin.  The denominator switches the reaction off as it becomes diffusion-limited.
    """

    A: float = 1.528e5  # 1/s
    activation_energy: float = 66.5e3  # J/mol
    m: float = 0.8129
    n: float = 2.736
    C: float = 43.09
    alpha_c0: float = -1.684
    alpha_ct: float = 5.475e-3  # 1/K
    R: float = 8.314  # J/(mol K)

    def critical_cure(self, T_celsius: np.ndarray | float) -> np.ndarray | float:
        """Diffusion-limited ceiling α_C0 + α_CT·T (T converted to kelvin)."""
        return self.alpha_c0 + self.alpha_ct * (np.asarray(T_celsius) + KELVIN)

    def rate(self, alpha: np.ndarray | float, T_celsius: np.ndarray | float,
             rate_factor: float = 1.0) -> np.ndarray | float:
        """Cure rate dα/dt (1/s); ``rate_factor`` multiplies the pre-exponential A."""
        alpha = np.asarray(alpha, dtype=float)
        Tk = np.asarray(T_celsius, dtype=float) + KELVIN
        K = rate_factor * self.A * np.exp(-self.activation_energy / (self.R * Tk))
        diffusion = 1.0 + np.exp(self.C * (alpha - (self.alpha_c0 + self.alpha_ct * Tk)))
        return K * alpha ** self.m * (1.0 - alpha) ** self.n / diffusion


@dataclass(frozen=True)
class Composite:
    """Unidirectional fibre/resin laminate, transverse (through-thickness) properties.

    Densities and specific heats combine by volume fraction (the rule of mixtures by volume that
    reproduces the published ρ_c = 1581 kg/m³ and c_c = 1080 J/(kg K) at 100 °C); the transverse
    conductivity follows the Springer–Tsai cylinder-in-square model.
    """

    rho_resin: float = 1300.0
    rho_fibre: float = 1790.0
    fibre_fraction: float = 0.574
    heat_of_reaction: float = 540e3  # J/kg of resin
    # c_p = c0 + c1 (T - 20 °C), J/(kg K)
    cp_resin0: float = 1005.0
    cp_resin1: float = 3.74
    cp_fibre0: float = 750.0
    cp_fibre1: float = 2.05
    # k_r = k0 + kT T + kα α ; k_f = k0 + kT T  (W/(m K), T in °C)
    k_resin0: float = 0.148
    k_resinT: float = 3.43e-4
    k_resin_alpha: float = 6.07e-2
    k_fibre0: float = 2.4
    k_fibreT: float = 1.56e-2

    @property
    def resin_fraction(self) -> float:
        return 1.0 - self.fibre_fraction

    @property
    def density(self) -> float:
        """ρ_c by volume fractions (kg/m³)."""
        return self.fibre_fraction * self.rho_fibre + self.resin_fraction * self.rho_resin

    def specific_heat(self, T: np.ndarray | float) -> np.ndarray | float:
        """c_c (J/(kg K)), volume-fraction weighted."""
        c0, c1 = self._cp_coefficients()
        return c0 + c1 * (np.asarray(T, dtype=float) - T_REF)

    def _cp_coefficients(self) -> tuple[float, float]:
        vf, vr = self.fibre_fraction, self.resin_fraction
        return (vf * self.cp_fibre0 + vr * self.cp_resin0, vf * self.cp_fibre1 + vr * self.cp_resin1)

    def heat_capacity_coefficients(self) -> tuple[float, float]:
        """(q0, q1) with ρc(T) = q0 + q1 (T - T_REF) in J/(m³ K)."""
        c0, c1 = self._cp_coefficients()
        return self.density * c0, self.density * c1

    @property
    def heat_release(self) -> float:
        """Heat released per m³ of laminate per unit degree of cure: ρ_r (1-V_f) H_r (J/m³)."""
        return self.rho_resin * self.resin_fraction * self.heat_of_reaction

    def resin_conductivity(self, T, alpha):
        return self.k_resin0 + self.k_resinT * T + self.k_resin_alpha * alpha

    def fibre_conductivity(self, T):
        return self.k_fibre0 + self.k_fibreT * T

    def conductivity(self, T: np.ndarray | float, alpha: np.ndarray | float) -> np.ndarray | float:
        """Transverse k_c (W/(m K)), Springer–Tsai cylinder-in-square model."""
        kr = self.resin_conductivity(np.asarray(T, dtype=float), np.asarray(alpha, dtype=float))
        kf = self.fibre_conductivity(np.asarray(T, dtype=float))
        return kr * self._springer_tsai_ratio(kr / kf)

    def _springer_tsai_ratio(self, kr_over_kf):
        s = np.sqrt(self.fibre_fraction / np.pi)
        B = 2.0 * (kr_over_kf - 1.0)
        root = np.sqrt(1.0 - B * B * s * s)
        return (1.0 - 2.0 * s) + (np.pi - 4.0 / root * np.arctan(root / (1.0 + B * s))) / B

    def diffusivity(self, T, alpha):
        """a_c = k_c / (ρ_c c_c) (m²/s)."""
        return self.conductivity(T, alpha) / (self.density * self.specific_heat(T))

    def adiabatic_rise(self, T: np.ndarray | float = 100.0) -> np.ndarray | float:
        """b = ρ_r (1-V_f) H_r / (ρ_c c_c): temperature rise for full cure without losses (K)."""
        return self.heat_release / (self.density * self.specific_heat(T))


@dataclass(frozen=True)
class Solid:
    """A tool material with constant properties."""

    density: float
    specific_heat_constant: float
    conductivity_constant: float

    def heat_capacity_coefficients(self) -> tuple[float, float]:
        return self.density * self.specific_heat_constant, 0.0

    def conductivity(self, T=None, alpha=None) -> float:
        return self.conductivity_constant

    @property
    def diffusivity_constant(self) -> float:
        return self.conductivity_constant / (self.density * self.specific_heat_constant)


#: Hexcel 8552 cure kinetics (Hubert–Johnston constants).
HEXCEL_8552 = CureKinetics()
#: AS4 fibre / 8552 resin laminate, V_f = 0.574.
AS4_8552 = Composite()
#: Invar 36 tool.
INVAR = Solid(density=8150.0, specific_heat_constant=510.0, conductivity_constant=13.0)
