"""Neural proposals for inference compilation (the only part of the core that imports torch).

``ProposalNetwork`` (observation embedding + LSTM + per-address heads), ``Trainer`` (the
``single`` trainer, and the loop whose extension points a trainer plugin overrides), ``LARC``,
the data sources, and the ``feedforward`` observation embedding. See
:mod:`etalumis_core.nn.embeddings` for the interface a proposal architecture registered through
``etalumis_register_proposals`` implements.
"""

from .embeddings import FeedForwardEmbedding, feedforward
from .heads import (HEADS, CategoricalHead, LogNormalMixtureHead, NormalMixtureHead,
                    PoissonMixtureHead, ProposalDistribution, ProposalHead,
                    TruncatedNormalMixtureHead, make_head)
from .network import EmbeddingFactory, Embeddings, ProposalNetwork, resolve_embedding
from .sources import DatasetSource, OnlineSource, as_source, balanced_cuts, split_range
from .train import LARC, Trainer, TrainingResult, make_optimizer, polynomial_decay, train

__all__ = ["ProposalNetwork", "EmbeddingFactory", "Embeddings", "resolve_embedding",
           "Trainer", "TrainingResult", "train", "LARC", "polynomial_decay", "make_optimizer",
           "OnlineSource", "DatasetSource", "as_source", "balanced_cuts", "split_range",
           "FeedForwardEmbedding", "feedforward", "ProposalHead",
           "NormalMixtureHead", "TruncatedNormalMixtureHead", "LogNormalMixtureHead",
           "PoissonMixtureHead", "CategoricalHead", "ProposalDistribution", "HEADS", "make_head"]
