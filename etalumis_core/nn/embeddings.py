"""Observation embeddings: the part of a proposal network that reads the observations.

The interface every proposal architecture implements (the ``etalumis_register_proposals`` hook
registers factories of this shape)::

    factory(observation_shapes: dict[str, tuple], embedding_dim: int, **options) -> torch.nn.Module

The module's ``forward(observations)`` takes a dict ``name -> float32 tensor (b, *shape)`` (every
name of ``observation_shapes``; already standardised by the network unless it was built with
``normalize_observations=False``) and returns a ``(b, embedding_dim)`` tensor. It must be
constructible from its options alone (the network file records the registry name and the
options, and rebuilds the module before loading its weights).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn


class FeedForwardEmbedding(nn.Module):
    """The default embedding: every observation flattened, concatenated (names sorted), and
    passed through a multilayer perceptron."""

    def __init__(self, observation_shapes: Mapping[str, Sequence[int]], embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (128,), activation: str = "relu") -> None:
        super().__init__()
        self.names = sorted(observation_shapes)
        self.input_dim = int(sum(int(np.prod(observation_shapes[n])) for n in self.names))
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}[activation]
        layers: list[nn.Module] = []
        width = self.input_dim
        for h in hidden_dims:
            layers += [nn.Linear(width, int(h)), act()]
            width = int(h)
        layers += [nn.Linear(width, embedding_dim), act()]
        self.net = nn.Sequential(*layers)
        self.embedding_dim = embedding_dim

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        flat = [observations[n].reshape(observations[n].shape[0], -1) for n in self.names]
        return self.net(torch.cat(flat, dim=1))


def feedforward(observation_shapes: Mapping[str, Sequence[int]], embedding_dim: int = 64,
                **options) -> nn.Module:
    """Factory registered as the ``feedforward`` proposal architecture."""
    return FeedForwardEmbedding(observation_shapes, embedding_dim, **options)
