"""The contracts every component implements; plugins subclass these."""
from simplug.components.cache_backend import CacheBackend
from simplug.components.distance import Distance
from simplug.components.encoder import Encoder
from simplug.components.head import EncoderHead
from simplug.components.loss import GroupLoss, PairwiseLoss, SimilarityLoss
from simplug.components.metric import (
    AttachedMetric,
    GroupMetric,
    Metric,
    PairMetric,
    PairScoreMetric,
)
from simplug.components.ranking import QueryBlock, Relevance

__all__ = [
    "CacheBackend",
    "Distance",
    "Encoder",
    "EncoderHead",
    "GroupLoss",
    "AttachedMetric",
    "GroupMetric",
    "Metric",
    "PairMetric",
    "PairScoreMetric",
    "PairwiseLoss",
    "QueryBlock",
    "Relevance",
    "SimilarityLoss",
]
