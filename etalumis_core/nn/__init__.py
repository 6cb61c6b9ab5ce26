"""Neural proposals for inference compilation (the only part of the core that imports torch).

``ProposalNetwork`` (observation embedding + LSTM + per-address heads), ``Trainer`` (the
``single`` trainer; online or from a dataset), ``LARC``, the data sources, and the
``feedforward`` observation embedding. See :mod:`etalumis_core.nn.embeddings` for the interface
a proposal architecture registered through ``etalumis_register_proposals`` implements.
"""

from .embeddings import FeedForwardEmbedding, feedforward
from .heads import (HEADS, CategoricalHead, LogNormalMixtureHead, NormalMixtureHead,
                    PoissonMixtureHead, ProposalDistribution, ProposalHead,
                    TruncatedNormalMixtureHead, make_head)
from .network import ProposalNetwork, embedding_factory
from .train import (LARC, DatasetSource, OnlineSource, Trainer, TrainingResult, as_source,
                    make_optimizer, polynomial_decay, train)

__all__ = ["ProposalNetwork", "Trainer", "TrainingResult", "train", "LARC", "polynomial_decay",
           "make_optimizer", "OnlineSource", "DatasetSource", "as_source",
           "FeedForwardEmbedding", "feedforward", "embedding_factory", "ProposalHead",
           "NormalMixtureHead", "TruncatedNormalMixtureHead", "LogNormalMixtureHead",
           "PoissonMixtureHead", "CategoricalHead", "ProposalDistribution", "HEADS", "make_head"]
