"""The local process pool: same results as serial, and a dead worker is a clear error."""

import functools
import os
import time

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core import SimulatorSpec
from etalumis_core.models import make_gaussian

OBS = {"obs0": 8.0, "obs1": 9.0}


def test_process_pool_gives_the_serial_posterior():
    spec = SimulatorSpec(make_gaussian, name="gaussian")
    serial = et.infer(spec, observe=OBS, num_traces=600, seed=4, chunk_size=100)
    with et.ProcessPoolExecutor(num_workers=2) as pool:
        pooled = et.infer(spec, observe=OBS, num_traces=600, seed=4, chunk_size=100,
                          executor=pool)
    assert np.array_equal(serial.log_weights, pooled.log_weights)
    assert np.array_equal(serial.marginal("mu").values, pooled.marginal("mu").values)


def test_a_pool_keeps_its_workers_between_rounds_of_work():
    """SMC maps over the pool once per round; the workers (and their simulators) stay, and
    the rounds give what a serial run gives."""
    spec = SimulatorSpec(make_gaussian, name="gaussian")
    serial = et.infer(spec, observe=OBS, engine="smc", num_traces=64, seed=2, chunk_size=16)
    with et.ProcessPoolExecutor(num_workers=2) as pool:
        pooled = et.infer(spec, observe=OBS, engine="smc", num_traces=64, seed=2,
                          chunk_size=16, executor=pool)
        first = set(pool.map(_worker_pid, [0, 1, 2, 3], spec))
        second = set(pool.map(_worker_pid, [0, 1, 2, 3], spec))
    assert len(first) == 2 and first == second
    assert pooled.metadata["rounds"] > 1
    assert np.array_equal(serial.marginal("mu").values, pooled.marginal("mu").values)


def _worker_pid(simulator, item, report):
    time.sleep(0.3)   # long enough that both workers take items
    return os.getpid()


def test_a_worker_that_dies_is_a_clear_error():
    dies = SimulatorSpec(functools.partial(os._exit, 3), name="dies")
    with pytest.raises(et.SimulatorError, match=r"worker process .* died.*__main__"):
        et.infer(dies, observe=OBS, num_traces=10, seed=0,
                 executor=et.ProcessPoolExecutor(num_workers=1))


class _Counted(et.PythonSimulator):
    built, closed = [], []

    def __init__(self):
        super().__init__(_one_normal, name="counted", observations={"y": ()})
        _Counted.built.append(self)

    def close(self):
        _Counted.closed.append(self)


def _one_normal():
    et.observe(et.Normal(et.sample(et.Normal(0.0, 1.0), name="m"), 1.0), name="y")


def test_a_run_without_an_executor_closes_what_it_built():
    """The serial executor keeps a simulator built from a spec across an engine's rounds, and
    the run that made the executor closes it (a PPX simulator's process must not outlive it)."""
    _Counted.built.clear(), _Counted.closed.clear()
    et.infer(SimulatorSpec(_Counted, name="counted"), observe={"y": 1.0}, engine="smc",
             num_traces=20, seed=0)
    assert len(_Counted.built) == 1 and _Counted.closed == _Counted.built
