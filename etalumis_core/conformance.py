"""A conformance suite that every simulator adapter runs against itself.

Subclass :class:`SimulatorConformance` in a plugin's tests and say how to build the simulator::

    from etalumis_core.conformance import SimulatorConformance

    class TestMySimulator(SimulatorConformance):
        def make_simulator(self):
            return my_plugin.make_simulator(steps=10)

pytest collects the inherited tests: seeded reproducibility, stable addresses, declared
observation shapes, controlled choices that the engines can take over, and clean shutdown.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .controller import Controller
from .simulator import Simulator, run_trace
from .trace import OBSERVE, SAMPLE


def _children() -> set[int]:
    """PIDs of this process's live children (Linux /proc), to detect leaked processes."""
    pids = set()
    task = f"/proc/{os.getpid()}/task"
    if not os.path.isdir(task):
        return pids
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    return {p for p in pids if os.path.exists(f"/proc/{p}") and _alive(p)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _trace(simulator: Simulator, seed: int) -> Any:
    return run_trace(simulator, Controller(np.random.default_rng(seed),
                                           sample_missing_observations=True))


def _same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


class SimulatorConformance:
    """Inherited tests for a simulator adapter (pytest collects them in subclasses)."""

    seeds = (0, 1, 2)

    def make_simulator(self) -> Simulator:
        raise NotImplementedError("override make_simulator() to build the simulator under test")

    def test_seeded_runs_are_reproducible(self) -> None:
        with self.make_simulator() as sim:
            for seed in self.seeds:
                a, b = _trace(sim, seed), _trace(sim, seed)
                assert [v.address for v in a.variables] == [v.address for v in b.variables]
                for va, vb in zip(a.variables, b.variables):
                    assert _same(va.value, vb.value), f"value at {va.address} differs"
                # Equal runs in a row also rule out hidden random state in the simulator.
                assert a.log_weight == b.log_weight

    def test_addresses_are_stable_across_instances(self) -> None:
        with self.make_simulator() as first:
            expected = [[v.address for v in _trace(first, s).variables] for s in self.seeds]
        with self.make_simulator() as second:
            found = [[v.address for v in _trace(second, s).variables] for s in self.seeds]
        assert found == expected

    def test_declared_observations_have_their_shapes(self) -> None:
        with self.make_simulator() as sim:
            declared = dict(sim.observations)
            assert declared, "declare the observed names and shapes in Simulator.observations"
            trace = _trace(sim, self.seeds[0])
        observed = {v.name: v.value for v in trace.variables if v.kind == OBSERVE and v.name}
        for name, shape in declared.items():
            assert name in observed, f"declared observation {name!r} was never observed"
            assert tuple(np.shape(observed[name])) == tuple(shape), (
                f"observation {name!r} has shape {np.shape(observed[name])}, declared {shape}")

    def test_has_controlled_random_choices(self) -> None:
        with self.make_simulator() as sim:
            trace = _trace(sim, self.seeds[0])
        controlled = [v for v in trace.variables if v.kind == SAMPLE and v.control]
        assert controlled, "an engine can control nothing: no controlled sample in a trace"
        assert np.isfinite(trace.log_prior)

    def test_clean_shutdown(self) -> None:
        before = _children()
        sim = self.make_simulator()
        _trace(sim, self.seeds[0])
        sim.close()
        sim.close()  # closing twice is allowed
        leaked = _children() - before
        assert not leaked, f"processes left running after close(): {sorted(leaked)}"
