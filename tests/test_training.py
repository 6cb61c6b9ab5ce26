"""Training: exact resume from checkpoints, offline training, LARC/SGD, logs, plots."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from etalumis_core import models  # noqa: E402
from etalumis_core.data import generate_dataset  # noqa: E402
from etalumis_core.nn import (DatasetSource, OnlineSource, ProposalNetwork,  # noqa: E402
                              Trainer, balanced_cuts, polynomial_decay, split_range)
from etalumis_core.errors import ConfigError  # noqa: E402
from etalumis_core.seeding import chunk_rng  # noqa: E402

SMALL = dict(embedding_dim=8, lstm_dim=16, address_embedding_dim=4, sample_embedding_dim=4,
             head_hidden_dim=16, mixture_components=2, embedding_options={"hidden_dims": (16,)})


def _network(sim):
    torch.manual_seed(123)
    return ProposalNetwork.for_simulator(sim, **SMALL)


class _Killed(Exception):
    pass


class _DiesAt:
    """A data source that fails at a given step, as a killed run would stop there."""

    def __init__(self, source, step):
        self.source, self.step = source, step

    def batch(self, step, batch_size):
        if step == self.step:
            raise _Killed()
        return self.source.batch(step, batch_size)

    def validation_batch(self, size):
        return self.source.validation_batch(size)


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_resumed_training_reproduces_the_uninterrupted_run(tmp_path):
    # poisson_mixture meets new addresses during training: new layers and parameter groups
    # must be rebuilt identically on resume.
    sim = models.make_poisson_mixture()
    options = dict(steps=30, batch_size=16, seed=4, checkpoint_interval=10, log_interval=5,
                   validation_size=32, validation_interval=10, lr_decay_power=1.0, plot=False,
                   progress=False)
    straight = Trainer().train(_network(sim), sim, tmp_path / "a", **options)

    source = OnlineSource(sim, seed=4)
    with pytest.raises(_Killed):
        Trainer().train(_network(sim), _DiesAt(source, 23), tmp_path / "b", **options)
    partial = _rows(tmp_path / "b" / "training_log.csv")
    assert partial[-1][0] == "20"
    resumed = Trainer().train(_network(sim), source, tmp_path / "b", **options)
    assert resumed.resumed_from == 20 * 16
    assert _rows(tmp_path / "a" / "training_log.csv") == _rows(tmp_path / "b" / "training_log.csv")
    assert straight.losses == resumed.losses
    a = torch.load(tmp_path / "a" / "network.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "network.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_streamed_from_simulator_workers_train_the_same_network(tmp_path):
    """data_workers draws the next batches in worker processes while the network trains on
    this one; the batches, the losses and the weights are those drawn in the trainer itself,
    also across a resume (the stream restarts at the checkpoint's step)."""
    sim = models.make_poisson_mixture()
    options = dict(steps=12, batch_size=16, seed=4, checkpoint_interval=5, validation_size=16,
                   validation_interval=5, plot=False, progress=False)
    inline = Trainer().train(_network(sim), sim, tmp_path / "a", **options)
    source = OnlineSource(sim, seed=4, workers=2)
    try:
        assert source.describe()["workers"] == 2
        with pytest.raises(_Killed):
            Trainer().train(_network(sim), _DiesAt(source, 7), tmp_path / "b", **options)
        resumed = Trainer().train(_network(sim), source, tmp_path / "b", **options)
    finally:
        source.close()
    assert resumed.resumed_from == 5 * 16
    assert inline.losses == resumed.losses
    streamed = Trainer().train(_network(sim), sim, tmp_path / "c", data_workers=1, **options)
    assert streamed.losses == inline.losses
    a = torch.load(tmp_path / "a" / "network.pt", weights_only=True)["state_dict"]
    c = torch.load(tmp_path / "c" / "network.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)


def _fails_at_step_two(mean):
    import etalumis_core as et

    x = et.sample(et.Normal(mean, 1.0), name="x")
    if abs(x) > 2.5:
        raise RuntimeError("simulator broke")
    et.observe(et.Normal(x, 1.0), name="y")


def test_a_simulator_error_in_a_data_worker_stops_training_with_its_message(tmp_path):
    import functools

    import etalumis_core as et
    from etalumis_core.errors import SimulatorError

    sim = et.PythonSimulator(functools.partial(_fails_at_step_two, 0.0), name="fragile")
    with pytest.raises(SimulatorError, match="simulator broke"):
        Trainer().train(_network(sim), sim, tmp_path, steps=50, batch_size=64, plot=False,
                        progress=False, data_workers=1)
    with pytest.raises(ConfigError, match="data_workers"):
        OnlineSource(sim, workers=-1)


def test_offline_training_with_sgd_larc_and_polynomial_decay(tmp_path):
    sim = models.make_poisson_mixture()
    ds = generate_dataset(sim, tmp_path / "data", 200, seed=0, chunk_size=100, progress=False)
    net = ProposalNetwork.for_dataset(ds, **SMALL)
    assert len(net.sites) == len(ds.addresses)   # pre-scanned: every address has layers
    sites_before = list(net.sites)
    result = Trainer(optimizer="sgd", larc=True, lr=0.05, lr_end=0.0, lr_decay_power=2.0,
                     log_interval=4, progress=False).train(
        net, ds.path, tmp_path / "run", steps=12, batch_size=32, validation_size=40,
        validation_interval=4)
    assert net.sites == sites_before
    rows = _rows(tmp_path / "run" / "training_log.csv")
    assert rows[0] == ["step", "traces", "loss", "lr", "validation_loss"]
    assert [r[0] for r in rows[1:]] == ["4", "8", "12"]
    assert float(rows[1][3]) == pytest.approx(polynomial_decay(3, 12, 0.05, 0.0, 2.0))
    assert all(r[4] for r in rows[1:]) and np.isfinite(float(rows[-1][4]))
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert result.traces == 12 * 32 and np.all(np.isfinite(result.losses))


def test_polynomial_decay():
    assert polynomial_decay(0, 100, 1e-3, 1e-5, 1.0) == pytest.approx(1e-3)
    assert polynomial_decay(50, 100, 1e-3, 1e-5, 1.0) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert polynomial_decay(100, 100, 1e-3, 1e-5, 2.0) == pytest.approx(1e-5)
    assert polynomial_decay(500, 100, 1e-3, 1e-5, 2.0) == pytest.approx(1e-5)


def test_global_batches_are_bucketed_by_trace_type_and_independent_of_world_size(tmp_path):
    ds = generate_dataset(models.make_poisson_mixture(), tmp_path / "d", 200, seed=1,
                          chunk_size=200, progress=False)
    one = DatasetSource(ds, seed=2)
    for step in range(4):
        ids = one.global_ids(step, 40)
        types = ds.trace_type[ids]
        assert np.all(np.diff(types) >= 0)          # sorted by trace type
        slices = [DatasetSource(ds, seed=2, rank=r, num_ranks=3).batch(step, 40)
                  for r in range(3)]
        assert sum(b.size for b in slices) == 40
        got = np.sort(np.concatenate([sb.trace_ids for b in slices for sb in b.sub_batches]))
        assert np.array_equal(got, np.sort(ids))     # the ranks partition the global batch
    # Each global batch holds the next traces of the epoch's permutation.
    for step in range(6):
        epoch, pos = divmod(step, 5)
        perm = chunk_rng(2, epoch).permutation(200)
        assert np.array_equal(np.sort(perm[pos * 40:(pos + 1) * 40]),
                              np.sort(one.global_ids(step, 40)))
    # A wider bucket window gives batches of fewer trace types, still one epoch of traces.
    wide = DatasetSource(ds, seed=2, bucket_window=5)

    def n_types(src):
        return np.mean([len(np.unique(ds.trace_type[src.global_ids(s, 40)])) for s in range(5)])

    assert n_types(wide) < n_types(one)
    epoch = np.concatenate([wide.global_ids(s, 40) for s in range(5)])
    assert np.array_equal(np.sort(epoch), np.arange(200))


def test_online_global_batches_do_not_depend_on_the_number_of_ranks():
    sim = models.make_poisson_mixture()

    def ids(batch):
        return sorted(i for sb in batch.sub_batches for i in sb.trace_ids.tolist())

    # One seed per trace: any number of ranks deals out the same global batch.
    whole = OnlineSource(sim, seed=7, traces_per_seed=1).batch(3, 10)
    parts = [OnlineSource(sim, seed=7, rank=r, num_ranks=3).batch(3, 10) for r in range(3)]
    assert [b.size for b in parts] == [3, 3, 4]
    assert ids(whole) == sorted(sum((ids(b) for b in parts), []))
    values = sorted(float(v[0]) for b in parts for sb in b.sub_batches for v in sb.values[0])
    assert values == sorted(float(v[0]) for sb in whole.sub_batches for v in sb.values[0])
    # One seed per batch (the single-process default): the batch of step s is chunk_rng(seed, s).
    assert ids(OnlineSource(sim, seed=7).batch(3, 10)) == list(range(30, 40))


def test_slices_balance_lstm_passes_against_traces():
    # 12 traces of one common type, then 4 rare types of one trace each (longer traces): the
    # rank holding the rare types runs 4 LSTM passes, so it gets fewer traces.
    types = np.array([0] * 12 + [1, 2, 3, 4])
    lengths = np.array([10] * 12 + [20, 20, 20, 20])
    cuts = balanced_cuts(types, lengths, 2)
    assert cuts[0] == 0 and cuts[-1] == 16
    assert 8 < cuts[1] <= 12
    # every rank gets at least one trace, even with more ranks than trace types
    cuts = balanced_cuts(np.zeros(5, dtype=int), np.full(5, 3), 5)
    assert np.array_equal(cuts, np.arange(6))
    cuts = balanced_cuts(np.array([0, 0, 0, 0, 0, 0, 7]), np.array([1] * 6 + [500]), 3)
    assert np.all(np.diff(cuts) >= 1) and cuts[-1] == 7
    assert [split_range(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]


def test_training_refuses_a_dataset_of_another_simulator(tmp_path):
    from etalumis_core.app.jobs import run_training
    from etalumis_core.errors import ConfigError
    from etalumis_core.simulator import SimulatorSpec

    generate_dataset(models.make_poisson_mixture(), tmp_path / "data", 20, seed=0,
                     chunk_size=20, progress=False)
    gaussian = SimulatorSpec(models.make_gaussian, name="gaussian")
    with pytest.raises(ConfigError, match="simulator 'poisson_mixture', not 'gaussian'"):
        run_training(gaussian, Trainer(progress=False), str(tmp_path / "run"), 20, 10,
                     dataset=str(tmp_path / "data"))
    assert not (tmp_path / "run").exists()   # refused before anything ran


def test_extension_points_decide_stopping_and_writing(tmp_path):
    sim = models.make_gaussian()
    options = dict(steps=50, batch_size=8, plot=False, progress=False, log_interval=5)
    # max_seconds: the run ends after the step that crossed it, with a checkpoint there.
    result = Trainer(max_seconds=1e-9).train(_network(sim), sim, tmp_path / "timed", **options)
    assert result.steps == 1 and len(result.losses) == 1
    assert _rows(tmp_path / "timed" / "training_log.csv")[-1][0] == "1"

    class Reader(Trainer):
        """A rank that is not the writer: it trains but writes no file."""

        is_writer = False
        calls: list = []

        def reduce_gradients(self):
            self.calls.append(self.step)

    result = Reader().train(_network(sim), sim, tmp_path / "reader", **options)
    assert result.steps == 50 and Reader.calls == list(range(50))
    assert not any((tmp_path / "reader").iterdir())
