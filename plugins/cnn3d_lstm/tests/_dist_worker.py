"""The rank program of the 2-process tests (a module, so that torch.multiprocessing.spawn can
import it in the child processes)."""

from __future__ import annotations

import torch
import torch.distributed as dist

SMALL = dict(embedding_dim=8, lstm_dim=16, address_embedding_dim=4, sample_embedding_dim=4,
             head_hidden_dim=16, mixture_components=2, embedding_options={"hidden_dims": [16]})
DATASET_OPTIONS = dict(seed=3, optimizer="sgd", lr=0.05, momentum=0.9, larc=True,
                       larc_trust_coefficient=0.02, checkpoint_interval=100, log_interval=2,
                       plot=False, progress=False, num_threads=1)
ONLINE_OPTIONS = dict(seed=5, optimizer="adam", lr=3e-3, lr_decay_power=1.0, lr_end=1e-4,
                      checkpoint_interval=100, log_interval=2, plot=False, progress=False,
                      num_threads=1)


def dataset_network(path: str):
    from etalumis_core.data.dataset import TraceDataset
    from etalumis_core.nn import ProposalNetwork

    torch.manual_seed(123)
    return ProposalNetwork.for_dataset(TraceDataset(path), **SMALL)


def online_network(seed: int = 321):
    from etalumis_core import models
    from etalumis_core.nn import ProposalNetwork

    torch.manual_seed(seed)
    return ProposalNetwork.for_simulator(models.make_poisson_mixture(), **SMALL)


def run(rank: int, world_size: int, init_method: str, dataset: str, out: str) -> None:
    from etalumis_core import models
    from etalumis_cnn3d_lstm.distributed import DistributedTrainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        # A different initialisation on each rank: the trainer must start all from rank 0's.
        net = dataset_network(dataset)
        DistributedTrainer(**DATASET_OPTIONS).train(net, dataset, f"{out}/dataset", steps=3,
                                                    batch_size=16)
        torch.save(net.state_dict(), f"{out}/dataset-rank{rank}.pt")
        net = online_network(seed=321 + rank)
        result = DistributedTrainer(**ONLINE_OPTIONS).train(
            net, models.make_poisson_mixture(), f"{out}/online", steps=4, batch_size=12)
        torch.save(net.state_dict(), f"{out}/online-rank{rank}.pt")
        torch.save({"losses": torch.tensor(result.losses),
                    "traces_trained": torch.tensor(net.traces_trained)},
                   f"{out}/online-result-rank{rank}.pt")
        # Leave together: a rank that tears down its gloo connections while the other still
        # holds them open can abort the other process.
        dist.barrier()
    finally:
        dist.destroy_process_group()
