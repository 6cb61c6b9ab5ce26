"""The 3-D convolutional observation embedding of the 3DCNN-LSTM proposal network.

A voxel grid (a calorimeter: 35 x 35 x 20 by default, any shape the observation has or that
``grid_shape`` gives it) passes through blocks of 3-D convolutions, each block followed by a
max-pool; the flattened feature map, concatenated with any other observations (flattened),
goes through fully connected layers to the ``embedding_dim`` vector that the core's LSTM reads
at every step. The default blocks, ``[[64, 64], [128, 128, 128]]`` with 3^3 kernels and no
padding, are those of the published 3DCNN-LSTM (pyprob's ``EmbeddingCNN3D5C``).

``downsample`` average-pools the grid before the convolutions (e.g. ``[5, 5, 4]`` turns
35 x 35 x 20 into 7 x 7 x 5): a cheap network for tests and quick studies, since the cost of
the convolutions grows with the number of voxels.

The factory has the signature of every proposal architecture (see
:mod:`etalumis_core.nn.embeddings`): ``cnn3d(observation_shapes, embedding_dim, **options)``;
the module is rebuilt from its options alone when a network file is loaded.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from etalumis_core import ConfigError

DEFAULT_CHANNELS = ((64, 64), (128, 128, 128))
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def _triple(value: int | Sequence[int], label: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * 3
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ConfigError(f"{label} must be an integer or three integers, got {value!r}")
    return out  # type: ignore[return-value]


def choose_grid(observation_shapes: Mapping[str, Sequence[int]], observation: str | None,
                grid_shape: Sequence[int] | None,
                architecture: str = "cnn3d_lstm") -> tuple[str, tuple[int, int, int]]:
    """The observation read as a voxel grid and its (D, H, W) shape.

    Without ``observation``: the only three-dimensional observation (or, with ``grid_shape``,
    the only observation of that many elements). ``architecture`` names the proposal in errors.
    """
    shapes = {k: tuple(int(d) for d in v) for k, v in observation_shapes.items()}
    if observation is None:
        if grid_shape is not None:
            size = int(np.prod(grid_shape))
            candidates = [k for k, s in shapes.items() if int(np.prod(s)) == size]
        else:
            candidates = [k for k, s in shapes.items() if len(s) == 3]
        if len(candidates) != 1:
            raise ConfigError(
                f"{architecture} cannot tell which observation is the voxel grid among "
                f"{ {k: list(v) for k, v in shapes.items()} }: set the proposal option "
                f"observation=NAME (and grid_shape=[D, H, W] if it is not three-dimensional)")
        observation = candidates[0]
    if observation not in shapes:
        raise ConfigError(f"{architecture}: observation {observation!r} is not among the "
                          f"network's inputs {sorted(shapes)}")
    shape = shapes[observation]
    grid = tuple(int(d) for d in (grid_shape if grid_shape is not None else shape))
    if len(grid) != 3 or int(np.prod(grid)) != int(np.prod(shape)):
        raise ConfigError(f"{architecture}: observation {observation!r} of shape {list(shape)} "
                          f"cannot be read as a grid of shape {list(grid)}; give "
                          f"grid_shape=[D, H, W] with D*H*W = {int(np.prod(shape))}")
    return observation, grid  # type: ignore[return-value]


def fully_connected(width: int, hidden_dims: Sequence[int], output_dim: int,
                    act: type[nn.Module]) -> nn.Sequential:
    """``[Linear, act]`` per hidden layer, then ``Linear, act`` to ``output_dim``: the layers
    between an embedding's features and its output."""
    layers: list[nn.Module] = []
    for h in hidden_dims:
        layers += [nn.Linear(width, int(h)), act()]
        width = int(h)
    layers += [nn.Linear(width, int(output_dim)), act()]
    return nn.Sequential(*layers)


class CNN3DEmbedding(nn.Module):
    """3-D convolutional embedding of one voxel-grid observation (plus any others, flattened).

    Parameters
    ----------
    observation_shapes:
        Observation name -> shape (the network's inputs).
    embedding_dim:
        Size of the output vector.
    observation:
        Name of the voxel-grid observation (default: the only 3-D one).
    grid_shape:
        ``[D, H, W]`` to read a flat (or differently shaped) observation as a grid.
    channels:
        Output channels of the convolutions, one list per block; a max-pool ends each block.
    kernel_size, padding:
        Of every convolution.
    pool:
        Max-pool size after each block (clipped to the feature map, so small grids still work).
    downsample:
        Average-pool the grid by this factor before the convolutions (None: full resolution).
    hidden_dims:
        Fully connected layers between the flattened features and the output.
    activation:
        ``relu`` (default), ``tanh``, ``elu`` or ``leaky_relu``.
    input_transform:
        ``log1p`` compresses the grid's dynamic range (``sign(x) log(1 + |x|)``, after the
        network's standardisation): a calorimeter is mostly empty voxels and a few that hold
        GeVs, and the compressed input trains much faster. ``none`` (default) as published.
    """

    def __init__(self, observation_shapes: Mapping[str, Sequence[int]], embedding_dim: int = 64,
                 observation: str | None = None, grid_shape: Sequence[int] | None = None,
                 channels: Sequence[Sequence[int]] = DEFAULT_CHANNELS, kernel_size: int = 3,
                 padding: int = 0, pool: int | Sequence[int] = 2,
                 downsample: int | Sequence[int] | None = None, hidden_dims: Sequence[int] = (),
                 activation: str = "relu", input_transform: str = "none") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                              f"{activation!r}")
        act = ACTIVATIONS[activation]
        if input_transform not in ("none", "log1p"):
            raise ConfigError(f"input_transform must be none or log1p, got {input_transform!r}")
        self.input_transform = input_transform
        self.observation, self.grid_shape = choose_grid(observation_shapes, observation,
                                                        grid_shape)
        self.others = sorted(n for n in observation_shapes if n != self.observation)
        self.other_dim = int(sum(int(np.prod(observation_shapes[n])) for n in self.others))
        self.embedding_dim = int(embedding_dim)

        layers: list[nn.Module] = []
        dims = self.grid_shape
        if downsample is not None:
            factor = _triple(downsample, "downsample")
            # ceil_mode keeps the border voxels: 35 / 5 and 20 / 3 both leave nothing out.
            layers.append(nn.AvgPool3d(factor, stride=factor, ceil_mode=True))
            dims = tuple(math.ceil(d / f) for d, f in zip(dims, factor))
        in_channels = 1
        kernel = int(kernel_size)
        pad = int(padding)
        pool3 = _triple(pool, "pool")
        for b, block in enumerate(channels):
            if isinstance(block, (int, np.integer)):
                block = [int(block)]
            for out_channels in block:
                dims = tuple(d + 2 * pad - kernel + 1 for d in dims)
                if min(dims) < 1:
                    raise ConfigError(
                        f"cnn3d_lstm: the grid {list(self.grid_shape)} (downsampled by "
                        f"{downsample}) is too small for the convolutions {list(channels)} "
                        f"(kernel {kernel}, padding {pad}): block {b} would leave a feature map "
                        f"of {list(dims)}; use fewer convolutions, padding=1 or less "
                        f"downsampling")
                layers += [nn.Conv3d(in_channels, int(out_channels), kernel, padding=pad), act()]
                in_channels = int(out_channels)
            size = tuple(min(p, d) for p, d in zip(pool3, dims))
            if max(size) > 1:
                layers.append(nn.MaxPool3d(size, stride=size))
                dims = tuple(d // s for d, s in zip(dims, size))
        self.cnn = nn.Sequential(*layers)
        self.feature_shape = (in_channels, *dims)
        self.cnn_output_dim = int(np.prod(self.feature_shape))
        self.mlp = fully_connected(self.cnn_output_dim + self.other_dim, hidden_dims,
                                   self.embedding_dim, act)

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        grid = observations[self.observation]
        b = grid.shape[0]
        if self.input_transform == "log1p":
            grid = torch.sign(grid) * torch.log1p(grid.abs())
        x = self.cnn(grid.reshape(b, 1, *self.grid_shape)).reshape(b, -1)
        if self.others:
            x = torch.cat([x] + [observations[n].reshape(b, -1) for n in self.others], dim=1)
        return self.mlp(x)

    def extra_repr(self) -> str:
        return (f"grid={self.observation!r} {list(self.grid_shape)}, features "
                f"{list(self.feature_shape)}, other inputs {self.others}")


def cnn3d(observation_shapes: Mapping[str, Sequence[int]], embedding_dim: int = 64,
          **options: Any) -> nn.Module:
    """Factory registered as the ``cnn3d_lstm`` proposal architecture."""
    return CNN3DEmbedding(observation_shapes, embedding_dim, **options)
