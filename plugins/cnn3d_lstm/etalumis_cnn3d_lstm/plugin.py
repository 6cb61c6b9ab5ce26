"""etalumis hook implementations: the ``cnn3d_lstm`` and ``calorimeter_projections``
proposals, the ``distributed`` trainer and their Hydra configs.

Every etalumis command loads every plugin, so nothing here imports torch: the factories do,
when a network or a trainer is actually built.
"""

from __future__ import annotations

from typing import Any

from etalumis_core import hookimpl


def make_embedding(**options: Any) -> Any:
    """``factory(observation_shapes, embedding_dim, **options)`` -> the 3-D CNN embedding."""
    from .embedding import cnn3d

    return cnn3d(**options)


def make_projections(**options: Any) -> Any:
    """``factory(observation_shapes, embedding_dim, **options)`` -> the projection embedding."""
    from .projections import calorimeter_projections

    return calorimeter_projections(**options)


def make_trainer(**options: Any) -> Any:
    """The data-parallel trainer (``torch.distributed``; gloo on CPU, NCCL on GPU)."""
    from .distributed import DistributedTrainer

    return DistributedTrainer(**options)


@hookimpl
def etalumis_register_proposals(register: Any) -> None:
    register("cnn3d_lstm", make_embedding,
             description="3-D convolutional embedding of a voxel grid (e.g. a 35x35x20 "
                         "calorimeter) feeding the LSTM proposal network")
    register("calorimeter_projections", make_projections,
             description="a voxel grid's three axis projections through small 2-D CNNs "
                         "feeding the LSTM proposal network (trains ~10x faster than "
                         "cnn3d_lstm on a CPU)")


@hookimpl
def etalumis_register_trainers(register: Any) -> None:
    register("distributed", make_trainer,
             description="data-parallel training with torch.distributed (gloo on CPU, NCCL on "
                         "GPU); launch with torchrun or srun")


@hookimpl
def etalumis_config_paths(register: Any) -> None:
    register("pkg://etalumis_cnn3d_lstm.conf")
