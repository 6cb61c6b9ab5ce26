"""Training: exact resume from checkpoints, offline training, LARC/SGD, logs, plots."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from etalumis_core import models  # noqa: E402
from etalumis_core.data import generate_dataset  # noqa: E402
from etalumis_core.nn import (OnlineSource, ProposalNetwork, Trainer,  # noqa: E402
                              polynomial_decay)

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


def test_fill_missing_gradients_lines_up_every_parameter(tmp_path):
    sim = models.make_poisson_mixture()
    net = _network(sim)
    source = OnlineSource(sim, seed=0)
    net.prescan(source.prescan_traces(200))
    trainer = Trainer(progress=False)
    trainer.network = net
    trainer.optimizer = torch.optim.Adam(net.parameters())
    batch = source.batch(0, 4)
    net.fit_normalizer(batch)
    net.loss(batch).backward()
    untouched = [p for p in net.parameters() if p.grad is None]
    assert untouched   # 4 traces do not visit every address
    trainer.fill_missing_gradients()
    assert all(p.grad is not None for p in net.parameters())
    assert all(float(p.grad.abs().sum()) == 0 for p in untouched)


def test_polynomial_decay():
    assert polynomial_decay(0, 100, 1e-3, 1e-5, 1.0) == pytest.approx(1e-3)
    assert polynomial_decay(50, 100, 1e-3, 1e-5, 1.0) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert polynomial_decay(100, 100, 1e-3, 1e-5, 2.0) == pytest.approx(1e-5)
    assert polynomial_decay(500, 100, 1e-3, 1e-5, 2.0) == pytest.approx(1e-5)
