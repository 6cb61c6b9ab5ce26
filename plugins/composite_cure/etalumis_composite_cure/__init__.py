"""Composite laminate cure: an etalumis simulator that infers the inside of a curing part.

A 1-D through-thickness heat-conduction solver with Hubert–Johnston cure kinetics for an AS4/8552
laminate on an Invar tool (:mod:`.solver`), wrapped in a probabilistic model with uncertain
heat-transfer coefficients, kinetic rate and a variable-length air-temperature cycle observed
through noisy surface thermocouples (:mod:`.model`).
"""
from .cycles import CureCycle, Segment, hexcel_two_hold_cycle, one_hold_cycle
from .materials import AS4_8552, HEXCEL_8552, INVAR, Composite, CureKinetics, Solid
from .solver import CureResult, CureSolver

__all__ = [
    "CureSolver", "CureResult", "CureCycle", "Segment", "one_hold_cycle", "hexcel_two_hold_cycle",
    "Composite", "CureKinetics", "Solid", "AS4_8552", "HEXCEL_8552", "INVAR",
    "CureSimulator", "make_simulator",
]


def __getattr__(name: str):
    # the model needs etalumis_core; the solver alone does not
    if name in ("CureSimulator", "make_simulator"):
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
