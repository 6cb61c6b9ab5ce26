"""The Dask executor: same posterior on any number of workers, and through a killed worker.

Local clusters here are small (at most 3 single-threaded workers, tiny runs) and always closed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402

import etalumis_core as et  # noqa: E402
from etalumis_core import models  # noqa: E402
from etalumis_core.dask_executor import DaskExecutor  # noqa: E402
from etalumis_core.errors import PluginError  # noqa: E402
from etalumis_core.plugins import load_plugins  # noqa: E402
from etalumis_core.simulator import Simulator, SimulatorSpec  # noqa: E402

# Workers import by name, and this test module is not importable by name under
# --import-mode=importlib: ship its simulators by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

OBSERVE = {"obs0": 8.0, "obs1": 9.0}
NUM_TRACES = 240
CHUNK = 20          # 12 work items


def _claim(marker: str) -> bool:
    """True for exactly one caller across all processes: the first attempt."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class Gaussian(Simulator):
    """The built-in Gaussian model, recording when it is built and closed (one file each)."""

    name = "gaussian"
    observations = {"obs0": (), "obs1": ()}

    def __init__(self, record_dir: str | None = None) -> None:
        self.inner = models.make_gaussian()
        self.record_dir = record_dir
        self.traces = 0
        self.closed = False
        self._record("built")

    def _record(self, event: str) -> None:
        if self.record_dir is not None:
            tag = f"{event}-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex}"
            Path(self.record_dir, tag).touch()

    def run(self, controller):
        self.traces += 1
        return self.inner.run(controller)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._record("closed")


class KillsItsWorker(Gaussian):
    """On its ``kill_at``-th trace, once across the whole cluster, kills its worker process
    mid-task (SIGKILL: no cleanup, the worker simply vanishes)."""

    def __init__(self, marker: str, kill_at: int) -> None:
        super().__init__()
        self.marker = marker
        self.kill_at = kill_at

    def run(self, controller):
        if self.traces + 1 == self.kill_at and _claim(self.marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run(controller)


class FailsOnce(Gaussian):
    """Raises on its ``fail_at``-th trace, once across the whole cluster."""

    def __init__(self, marker: str, fail_at: int) -> None:
        super().__init__()
        self.marker = marker
        self.fail_at = fail_at

    def run(self, controller):
        if self.traces + 1 == self.fail_at and _claim(self.marker):
            raise RuntimeError("transient simulator failure")
        return super().run(controller)


def _importance(simulator, executor=None, seed: int = 11) -> et.Posterior:
    return et.infer(simulator, observe=OBSERVE, engine="importance", num_traces=NUM_TRACES,
                    seed=seed, chunk_size=CHUNK, executor=executor, progress=False)


def _assert_same(posterior: et.Posterior, reference: et.Posterior) -> None:
    assert posterior.num_traces == reference.num_traces
    # Bitwise: equal arrays of float64, not approximately equal.
    assert posterior.log_weights.tobytes() == reference.log_weights.tobytes()
    assert posterior.named["mu"].values.tobytes() == reference.named["mu"].values.tobytes()
    assert np.array_equal(posterior.chain, reference.chain)


@pytest.fixture(scope="module")
def reference() -> et.Posterior:
    return _importance(SimulatorSpec(models.make_gaussian, name="gaussian"))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_same_posterior_on_any_number_of_workers(workers, reference, tmp_path):
    spec = SimulatorSpec(Gaussian, {"record_dir": str(tmp_path)}, name="gaussian")
    with DaskExecutor(n_workers=workers) as executor:
        assert executor.num_workers == workers
        posterior = _importance(spec, executor)
        _assert_same(posterior, reference)
        assert posterior.metadata["executor"] == "dask"
        assert posterior.metadata["num_workers"] == workers
        assert posterior.metadata["tasks"] == NUM_TRACES // CHUNK
        assert posterior.metadata["retried_tasks"] == 0
        if workers == 2:
            # MH: each chain is one work item; R-hat is reported for the named scalar.
            mh = dict(engine="lmh", num_traces=120, seed=5, chains=3, progress=False)
            parallel = et.infer(spec, observe=OBSERVE, executor=executor, **mh)
            serial = et.infer(SimulatorSpec(models.make_gaussian), observe=OBSERVE, **mh)
            assert parallel.named["mu"].values.tobytes() == serial.named["mu"].values.tobytes()
            assert np.array_equal(parallel.chain, serial.chain)
            assert parallel.metadata["r_hat"] == serial.metadata["r_hat"]
            assert set(parallel.metadata["r_hat"]) == {"mu"}
    # Built once per worker (not once per task), and closed when the workers shut down.
    built = sorted(p.name.split("-")[1] for p in tmp_path.glob("built-*"))
    closed = sorted(p.name.split("-")[1] for p in tmp_path.glob("closed-*"))
    assert 1 <= len(built) <= workers
    assert closed == built


def test_killed_worker_task_is_rerun_elsewhere(reference, tmp_path):
    marker = tmp_path / "killed"
    # The 30th trace a worker runs is mid-way through its second chunk of 20.
    spec = SimulatorSpec(KillsItsWorker, {"marker": str(marker), "kill_at": 30}, name="gaussian")
    with DaskExecutor(n_workers=2) as executor:
        posterior = _importance(spec, executor)
        assert marker.exists(), "the designated task never ran"
        # Exactly the requested traces, none twice, and the undisturbed run's posterior.
        assert posterior.num_traces == NUM_TRACES
        assert len(np.unique(posterior.named["mu"].values)) == NUM_TRACES
        _assert_same(posterior, reference)
        assert posterior.metadata["retried_tasks"] >= 1
        assert posterior.metadata["lost_attempts"] >= 1
        assert posterior.metadata["failed_attempts"] == 0

        # A task that raises is retried too (retries=), and reported as a failed attempt.
        spec = SimulatorSpec(FailsOnce, {"marker": str(tmp_path / "failed"), "fail_at": 5},
                             name="gaussian")
        posterior = _importance(spec, executor)
        _assert_same(posterior, reference)
        assert posterior.metadata["retried_tasks"] == 1
        assert posterior.metadata["failed_attempts"] == 1
        assert posterior.metadata["lost_attempts"] == 0
        assert executor.stats()["retried_tasks"] >= 2   # counters accumulate over runs


class _Bar:
    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)


def _double(simulator, item, report):
    return 2 * item


def test_map_keeps_order_and_reports_progress_by_weight():
    bar = _Bar()
    with DaskExecutor(n_workers=1) as executor:
        items = list(range(7))
        out = executor.map(_double, items, SimulatorSpec(models.make_gaussian), bar,
                           weights=[10 + i for i in items])
        assert executor.map(_double, [], SimulatorSpec(models.make_gaussian)) == []
    assert out == [2 * i for i in items]
    assert sorted(bar.updates) == [10 + i for i in items]


def test_registered_and_configured():
    plugins = load_plugins(load_entry_points=False)
    assert "dask" in plugins.executors.names()
    import inspect

    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf" / "executor" / "dask.yaml"
    config = yaml.safe_load(conf.read_text())
    assert config["name"] == "dask"
    inspect.signature(DaskExecutor).bind(**config["params"])


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "etalumis_core.dask_executor")
    plugins = load_plugins(load_entry_points=False)
    with pytest.raises(PluginError, match=r"pip install 'etalumis-core\[dask\]'"):
        plugins.executors.create("dask", n_workers=1)


def test_worker_cache_keeps_one_simulator_per_spec_and_thread(tmp_path):
    from etalumis_core.dask_executor import SimulatorCache

    cache = SimulatorCache(max_simulators=1)
    cache.setup(worker=None)
    first = cloudpickle.dumps(SimulatorSpec(Gaussian, {"record_dir": str(tmp_path)}))
    a = cache.get("a", first)
    assert cache.get("a", first) is a
    other = []
    thread = threading.Thread(target=lambda: other.append(cache.get("a", first)))
    thread.start()
    thread.join()
    assert other[0] is not a and len(cache) == 2     # one per thread
    b = cache.get("b", first)                        # a second spec evicts the first's
    assert a.closed and other[0].closed and not b.closed and len(cache) == 1
    cache.teardown(worker=None)
    assert b.closed and len(cache) == 0


def test_the_dashboard_listens_on_loopback_only():
    import psutil

    with DaskExecutor(n_workers=1) as executor:
        port = int(executor.client.dashboard_link.split(":")[2].split("/")[0])
        listening = [c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and set(listening) <= {"127.0.0.1"}, listening


class Hangs(Gaussian):
    """Hangs on its ``at``-th trace: once across the whole cluster, or every time."""

    def __init__(self, marker: str, at: int, always: bool = False) -> None:
        super().__init__()
        self.marker, self.at, self.always = marker, at, always

    def run(self, controller):
        if self.traces + 1 == self.at and (self.always or _claim(self.marker)):
            import time

            time.sleep(120)
        return super().run(controller)


def test_a_trace_past_the_timeout_kills_its_worker_and_is_rerun(reference, tmp_path):
    marker = tmp_path / "hung"
    spec = SimulatorSpec(Hangs, {"marker": str(marker), "at": 30}, name="gaussian")
    with DaskExecutor(n_workers=2, timeout=1.0) as executor:
        posterior = _importance(spec, executor)
    assert marker.exists(), "no trace hung"
    _assert_same(posterior, reference)
    assert posterior.metadata["lost_attempts"] >= 1


def test_a_trace_that_always_hangs_fails_clearly(tmp_path):
    import dask

    spec = SimulatorSpec(Hangs, {"marker": str(tmp_path / "hung"), "at": 10, "always": True},
                         name="gaussian")
    # The scheduler reads allowed-failures when it starts: one rerun, then the item fails.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        executor = DaskExecutor(n_workers=1, timeout=1.0)
    with executor, pytest.raises(et.SimulatorError, match=(
            r"work item 0: trace 10 of the item ran longer than the executor's timeout of 1 s, "
            r"and its worker was killed and the item rerun, 2 times. .*DaskExecutor\(timeout")):
        _importance(spec, executor)


class AlwaysKillsItsWorker(Gaussian):
    def run(self, controller):
        os.kill(os.getpid(), signal.SIGKILL)


def test_an_item_that_keeps_killing_its_worker_fails_clearly():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor(n_workers=1)
    with executor, pytest.raises(et.SimulatorError, match=(
            r"work item \d+ was lost with its worker 1 time: the simulator crashes its worker")):
        _importance(SimulatorSpec(AlwaysKillsItsWorker, name="gaussian"), executor)


def _raises(simulator, item, report):
    if item == 1:
        raise ZeroDivisionError("no")
    return item


def test_a_simulator_exception_names_its_work_item():
    with DaskExecutor(n_workers=1, retries=0) as executor:
        with pytest.raises(et.SimulatorError, match=r"work item 1: the simulator raised "
                                                    r"ZeroDivisionError: no"):
            executor.map(_raises, [0, 1], SimulatorSpec(models.make_gaussian))


def test_training_batches_stream_from_a_dask_cluster():
    """An online source streams its batches from the cluster's workers: the same batches as
    drawn in the training process."""
    from etalumis_core.nn import OnlineSource

    spec = SimulatorSpec(models.make_gaussian, name="gaussian")
    inline = OnlineSource(spec, seed=3)
    with DaskExecutor(n_workers=2) as executor:
        streamed = OnlineSource(spec, seed=3, executor=executor)
        try:
            batches = [streamed.batch(step, 8) for step in range(4)]
        finally:
            streamed.close()
    for step, batch in enumerate(batches):
        expected = inline.batch(step, 8)
        assert [sb.trace_ids.tolist() for sb in batch.sub_batches] == \
            [sb.trace_ids.tolist() for sb in expected.sub_batches]
        assert all(np.array_equal(a, b) for sb, se in zip(batch.sub_batches,
                                                          expected.sub_batches)
                   for a, b in zip(sb.values, se.values))
    inline.close()
