"""The distributed trainer: a real 2-process gloo group against single-process training."""

from __future__ import annotations

import csv
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.multiprocessing as mp  # noqa: E402

from etalumis_core import models  # noqa: E402
from etalumis_core.data import generate_dataset  # noqa: E402
from etalumis_core.nn import Trainer  # noqa: E402

from etalumis_cnn3d_lstm.distributed import (DistributedTrainer, choose_backend,  # noqa: E402
                                             detect_launch, scaled_lr)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _dist_worker as worker  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(a: dict, b: dict, atol: float = 2e-5, rtol: float = 1e-4) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=rtol, msg=lambda m: f"{k}: {m}")
        else:
            assert torch.equal(a[k], b[k]), k


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One 2-process gloo run (dataset then online training), shared by the tests below."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dist")
    # poisson_mixture: the number of latent variables varies, so some addresses are missing
    # from a rank's slice of a minibatch (or from the whole global batch).
    ds = generate_dataset(models.make_poisson_mixture(), root / "data", 96, seed=0,
                          chunk_size=48, progress=False)
    mp.spawn(worker.run, args=(2, f"tcp://127.0.0.1:{_free_port()}", str(ds.path), str(root)),
             nprocs=2, join=True)
    return root, ds


def test_two_gloo_ranks_match_single_process_training_on_the_global_batch(two_ranks):
    root, ds = two_ranks
    reference = worker.dataset_network(str(ds.path))
    # The core's single-process trainer on the same global batches (same seed, batch 16).
    Trainer(**worker.DATASET_OPTIONS).train(reference, ds, root / "single", steps=3,
                                            batch_size=16)
    rank0, rank1 = _load(root / "dataset-rank0.pt"), _load(root / "dataset-rank1.pt")
    _close(rank0, reference.state_dict())
    _close(rank0, rank1, atol=0, rtol=0)   # every rank applies the same reduced gradient
    moved = [k for k in rank0 if not torch.equal(rank0[k], worker.dataset_network(
        str(ds.path)).state_dict()[k])]
    assert len(moved) > 10   # training happened


def test_online_training_does_not_depend_on_the_number_of_ranks(two_ranks):
    # Addresses are discovered during training: new layers must appear on both ranks alike.
    root, _ = two_ranks
    net = worker.online_network()
    result = DistributedTrainer(**worker.ONLINE_OPTIONS).train(
        net, models.make_poisson_mixture(), root / "online-single", steps=4, batch_size=12)
    two = _load(root / "online-rank0.pt")
    _close(two, net.state_dict())
    _close(two, _load(root / "online-rank1.pt"), atol=0, rtol=0)
    info = _load(root / "online-result-rank0.pt")
    np.testing.assert_allclose(info["losses"].numpy(), result.losses, rtol=1e-5)
    assert int(info["traces_trained"]) == net.traces_trained == 4 * 12


def test_a_two_rank_checkpoint_resumes_on_one_rank(two_ranks):
    root, ds = two_ranks
    straight = worker.dataset_network(str(ds.path))
    Trainer(**worker.DATASET_OPTIONS).train(straight, ds, root / "straight", steps=6,
                                            batch_size=16)
    resumed = worker.dataset_network(str(ds.path))
    result = DistributedTrainer(**worker.DATASET_OPTIONS).train(
        resumed, ds, root / "dataset", steps=6, batch_size=16)
    assert result.resumed_from == 3 * 16
    _close(resumed.state_dict(), straight.state_dict())
    with open(root / "dataset" / "training_log.csv") as f:
        rows = list(csv.reader(f))
    assert rows[-1][0] == "6" and float(rows[-1][3]) == worker.DATASET_OPTIONS["lr"]
    with open(root / "dataset" / "throughput.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["global_traces_per_s"]) > 0
    assert len(rows[0]["per_rank_traces_per_s"].split()) == 2   # written during the 2-rank part


def test_linear_scaling_with_warmup():
    kw = dict(total_steps=100, lr=0.01, lr_end=0.0, power=1.0, batch_size=512,
              base_batch_size=64)
    assert scaled_lr(0, **kw, warmup_steps=10) == pytest.approx(0.01)
    assert scaled_lr(5, **kw, warmup_steps=10) == pytest.approx(0.01 + 0.07 * 0.5)
    assert scaled_lr(10, **kw, warmup_steps=10) == pytest.approx(0.08)
    assert scaled_lr(55, **kw, warmup_steps=10) == pytest.approx(0.04)
    assert scaled_lr(3, **{**kw, "power": 0.0}, scaling="sqrt") == pytest.approx(0.01 * 8 ** 0.5)
    assert scaled_lr(3, **{**kw, "power": 0.0}, scaling="none") == pytest.approx(0.01)
    assert scaled_lr(3, **{**kw, "power": 0.0, "base_batch_size": None}) == pytest.approx(0.01)


def test_launch_environment_and_backend():
    assert detect_launch({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == {
        "launcher": "torchrun", "rank": 3, "world_size": 8, "local_rank": 1}
    assert detect_launch({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}) == {
        "launcher": "slurm", "rank": 5, "world_size": 6, "local_rank": 2}
    assert detect_launch({})["world_size"] == 1
    assert choose_backend("auto") == ("nccl" if torch.cuda.is_available() else "gloo")
