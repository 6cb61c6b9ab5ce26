"""A fast observation embedding of a voxel grid: its three axis projections through 2-D CNNs.

A calorimeter event lights a few hundred of the 24,500 voxels of a 35 x 35 x 20 grid, and a 3-D
convolution over the full grid spends nearly all its arithmetic on empty voxels (the published
3DCNN-LSTM trains about 10 traces/s on one core, nearly all of it in the convolutions). The
grid's sums along each axis keep where the energy went, transversely (x-y) and in depth (x-z,
y-z), in 35 x 35 + 2 x 35 x 20 = 2,625 pixels, a ninth of the voxels; small 2-D convolutions
read them for a few percent of the 3-D network's cost.

The projections are sums of the network's standardised grid, an affine function of the
deposit counts, so a pixel keeps the energy its line received. Compressing the voxels first
(``sign(x) log(1 + |x|)``, before or after projecting) was measured on toy_tau_decay and
learnt far less per trace (validation loss stuck near 14.0 nats where the plain sums reached
13.2-13.5 in the same 90 s), so the embedding has no such option.

The factory has the signature of every proposal architecture (see
:mod:`etalumis_core.nn.embeddings`): ``calorimeter_projections(observation_shapes,
embedding_dim, **options)``; the module is rebuilt from its options alone when a network file
is loaded.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from etalumis_core import ConfigError

from .embedding import ACTIVATIONS, choose_grid, fully_connected

DEFAULT_CHANNELS = (16, 32)
# (axis summed over, name) of each projection of a (D, H, W) grid.
PROJECTIONS = ((3, "xy"), (2, "xz"), (1, "yz"))


class ProjectionCNN(nn.Module):
    """Convolutions (``kernel_size``, padding keeping the size) each followed by a max-pool,
    over one 2-D projection; ``output_dim`` features."""

    def __init__(self, shape: tuple[int, int], channels: Sequence[int], kernel_size: int,
                 pool: int, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dims = shape
        in_channels = 1
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, int(out_channels), kernel_size,
                                 padding=kernel_size // 2), act()]
            in_channels = int(out_channels)
            size = tuple(min(pool, d) for d in dims)
            if max(size) > 1:
                layers.append(nn.MaxPool2d(size, stride=size))
                dims = tuple(d // s for d, s in zip(dims, size))
        self.net = nn.Sequential(*layers)
        self.output_dim = in_channels * int(np.prod(dims))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image.unsqueeze(1)).flatten(1)


class ProjectionEmbedding(nn.Module):
    """Embedding of one voxel-grid observation from its three axis projections (plus any other
    observations, flattened).

    Parameters
    ----------
    observation_shapes:
        Observation name -> shape (the network's inputs).
    embedding_dim:
        Size of the output vector.
    observation, grid_shape:
        As for the ``cnn3d_lstm`` embedding: the voxel grid (default: the only 3-D
        observation) and ``[D, H, W]`` to read a flat observation as a grid.
    channels:
        Output channels of the 2-D convolutions of each projection; a max-pool follows each.
    kernel_size:
        Of every convolution (odd; padded to keep the image size).
    pool:
        Max-pool size after each convolution (clipped to the feature map).
    hidden_dims:
        Fully connected layers between the concatenated features and the output.
    activation:
        ``relu`` (default), ``tanh``, ``elu`` or ``leaky_relu``.
    """

    def __init__(self, observation_shapes: Mapping[str, Sequence[int]], embedding_dim: int = 64,
                 observation: str | None = None, grid_shape: Sequence[int] | None = None,
                 channels: Sequence[int] = DEFAULT_CHANNELS, kernel_size: int = 3,
                 pool: int = 2, hidden_dims: Sequence[int] = (),
                 activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                              f"{activation!r}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd integer (the projections are "
                              f"padded to keep their size), got {kernel_size!r}")
        act = ACTIVATIONS[activation]
        self.observation, self.grid_shape = choose_grid(observation_shapes, observation,
                                                        grid_shape, "calorimeter_projections")
        self.others = sorted(n for n in observation_shapes if n != self.observation)
        self.other_dim = int(sum(int(np.prod(observation_shapes[n])) for n in self.others))
        self.embedding_dim = int(embedding_dim)
        self.projections = nn.ModuleDict()
        for axis, name in PROJECTIONS:
            shape = tuple(d for i, d in enumerate(self.grid_shape, start=1) if i != axis)
            self.projections[name] = ProjectionCNN(shape, [int(c) for c in channels],
                                                   int(kernel_size), int(pool), act)
        width = sum(p.output_dim for p in self.projections.values()) + self.other_dim
        self.mlp = fully_connected(width, hidden_dims, self.embedding_dim, act)

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        grid = observations[self.observation]
        b = grid.shape[0]
        grid = grid.reshape(b, *self.grid_shape)
        features = [self.projections[name](grid.sum(dim=axis)) for axis, name in PROJECTIONS]
        features += [observations[n].reshape(b, -1) for n in self.others]
        return self.mlp(torch.cat(features, dim=1))

    def extra_repr(self) -> str:
        return f"grid={self.observation!r} {list(self.grid_shape)}, other inputs {self.others}"


def calorimeter_projections(observation_shapes: Mapping[str, Sequence[int]],
                            embedding_dim: int = 64, **options: Any) -> nn.Module:
    """Factory registered as the ``calorimeter_projections`` proposal architecture."""
    return ProjectionEmbedding(observation_shapes, embedding_dim, **options)
