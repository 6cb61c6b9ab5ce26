"""The 3DCNN-LSTM proposal architecture and the distributed trainer of etalumis.

``proposal=cnn3d_lstm``: a 3-D convolutional embedding of a voxel-grid observation (a
calorimeter) feeding the core's LSTM proposal network (:mod:`etalumis_cnn3d_lstm.embedding`).
``proposal=calorimeter_projections``: the grid's three axis projections through small 2-D
convolutions, the fast embedding for CPU training (:mod:`etalumis_cnn3d_lstm.projections`).
``trainer=distributed``: data-parallel training over ``torch.distributed`` (gloo on CPU, NCCL
on GPU), launched with ``torchrun`` or ``srun`` (:mod:`etalumis_cnn3d_lstm.distributed`).

Importing this package does not import torch; the submodules do.
"""

__version__ = "0.1.0"

__all__ = ["CNN3DEmbedding", "cnn3d", "ProjectionEmbedding", "calorimeter_projections",
           "DistributedTrainer", "choose_backend", "init_distributed", "scaled_lr"]

_LAZY = {"CNN3DEmbedding": "embedding", "cnn3d": "embedding",
         "ProjectionEmbedding": "projections", "calorimeter_projections": "projections",
         "DistributedTrainer": "distributed", "choose_backend": "distributed",
         "init_distributed": "distributed", "scaled_lr": "distributed"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'etalumis_cnn3d_lstm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
