"""The local process pool: same results as serial, and a dead worker is a clear error."""

import functools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core import SimulatorSpec
from etalumis_core.models import gaussian_unknown_mean, make_gaussian

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


def _not_built():
    raise et.ConfigError("the front end /nowhere is not built: run `make front-end` first")


def test_a_simulator_a_worker_cannot_build_is_its_own_error():
    """The error the simulator's factory raised in the worker reaches the caller as itself
    and the fix it names, not as "a worker process died"."""
    with et.ProcessPoolExecutor(num_workers=1) as pool:
        with pytest.raises(et.ConfigError, match="is not built: run `make front-end` first"):
            et.infer(SimulatorSpec(_not_built, name="not built"), observe=OBS, num_traces=10,
                     seed=0, executor=pool, progress=False)


KILLED_PARENT = textwrap.dedent("""
    import os, sys, time
    import etalumis_core as et
    from etalumis_core.models import make_gaussian

    def long_item(simulator, item, report):
        print(os.getpid(), flush=True)   # the worker's pid, then work for a long time
        time.sleep(120)

    if __name__ == "__main__":
        pool = et.ProcessPoolExecutor(num_workers=1)
        pool.map(long_item, [0], et.SimulatorSpec(make_gaussian, name="gaussian"))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:   # a zombie waits only for its parent to reap it
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_killed_parent_takes_its_workers_with_it(tmp_path):
    """A pool's parent killed outright cannot shut its workers down: they notice that they
    were orphaned and exit within seconds instead of working on for nobody."""
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the orphaned worker is still running"
    finally:
        parent.kill()


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


# -- traces that never end, simulators that raise ----------------------------------------------

def _claim(marker: str) -> bool:
    """True for exactly one caller across all processes: the first attempt."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class _Sleeps(et.PythonSimulator):
    """The Gaussian model, whose ``at``-th trace on a worker hangs: once across all workers
    (``marker``), or every time."""

    def __init__(self, marker: str, at: int, always: bool = False) -> None:
        super().__init__(gaussian_unknown_mean, name="gaussian",
                         observations={"obs0": (), "obs1": ()})
        self.marker, self.at, self.always, self.traces = marker, at, always, 0

    def run(self, controller):
        self.traces += 1
        if self.traces == self.at and (self.always or _claim(self.marker)):
            time.sleep(120)
        return super().run(controller)


def test_a_trace_past_the_timeout_is_killed_and_rerun_from_its_seed(tmp_path):
    spec = SimulatorSpec(_Sleeps, {"marker": str(tmp_path / "slept"), "at": 30})
    run = dict(observe=OBS, num_traces=240, seed=4, chunk_size=20, progress=False)
    reference = et.infer(SimulatorSpec(make_gaussian), **run)
    started = time.monotonic()
    # 2 s: far above a Gaussian trace even on a busy machine, so only the hang times out.
    with et.ProcessPoolExecutor(num_workers=2, timeout=2.0, retries=1) as pool:
        posterior = et.infer(spec, executor=pool, **run)
    assert (tmp_path / "slept").exists(), "no trace hung"
    assert time.monotonic() - started < 60
    assert posterior.log_weights.tobytes() == reference.log_weights.tobytes()
    assert posterior.marginal("mu").values.tobytes() == reference.marginal("mu").values.tobytes()
    assert posterior.metadata["timed_out_attempts"] == 1
    assert posterior.metadata["retried_tasks"] == 1


def test_a_trace_that_always_hangs_fails_clearly_after_the_retries(tmp_path):
    spec = SimulatorSpec(_Sleeps, {"marker": str(tmp_path / "slept"), "at": 10, "always": True})
    with et.ProcessPoolExecutor(num_workers=1, timeout=1.0, retries=1) as pool:
        with pytest.raises(et.SimulatorError, match=(
                r"work item 0: trace 10 of the item ran longer than the executor's timeout of "
                r"1 s on all 2 attempts .* ProcessPoolExecutor\(timeout=...\)")):
            et.infer(spec, observe=OBS, num_traces=40, seed=0, chunk_size=20, executor=pool,
                     progress=False)


def _fails_on_a_large_draw():
    x = et.sample(et.Normal(0.0, 1.0), name="x")
    if x > 1.5:
        raise ValueError("boom")
    et.observe(et.Normal(x, 1.0), name="y")


def test_a_simulator_exception_in_a_pool_names_the_item_trace_and_seed():
    with et.ProcessPoolExecutor(num_workers=1) as pool:
        with pytest.raises(et.SimulatorError, match=re.escape(
                "work item 0: the simulator raised ValueError: boom (raised by trace 4 drawn "
                "from chunk_rng(3, 0) (the run's seed 3))")):
            et.infer(_fails_on_a_large_draw, observe={"y": 1.0}, num_traces=200, seed=3,
                     chunk_size=50, executor=pool, progress=False)


def test_timeouts_are_checked():
    with pytest.raises(ValueError, match="timeout must be positive"):
        et.ProcessPoolExecutor(timeout=0)


def test_the_pool_is_configured_with_its_timeout():
    import inspect
    from pathlib import Path

    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf" / "executor" / "process.yaml"
    params = yaml.safe_load(conf.read_text())["params"]
    assert params["timeout"] == 600 and params["retries"] == 2
    inspect.signature(et.ProcessPoolExecutor).bind(**params)
