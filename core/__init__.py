"""simplug: fine-tune similarity-learning models from pluggable components.

``import simplug`` stays light (no torch): everything heavy is resolved lazily on
first attribute access (PEP 562), so plugin hook modules and ``simplug list`` are cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from simplug.registry.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Registry": "simplug.registry",
    "get_registry": "simplug.registry",
    "SimplugError": "simplug.errors",
    "SimilarityPairSample": "simplug.data.samples",
    "SimilarityGroupSample": "simplug.data.samples",
    "SimilarityGroupDataset": "simplug.data.samples",
    "PairsSimilarityDataLoader": "simplug.data.loaders",
    "GroupSimilarityDataLoader": "simplug.data.loaders",
    "Encoder": "simplug.components.encoder",
    "EncoderHead": "simplug.components.head",
    "SimilarityLoss": "simplug.components.loss",
    "PairwiseLoss": "simplug.components.loss",
    "GroupLoss": "simplug.components.loss",
    "Distance": "simplug.components.distance",
    "Metric": "simplug.components.metric",
    "PairMetric": "simplug.components.metric",
    "GroupMetric": "simplug.components.metric",
    "CacheBackend": "simplug.components.cache_backend",
    "CacheConfig": "simplug.training.cache.config",
    "CacheType": "simplug.training.cache.config",
    "TrainableModel": "simplug.training.trainable",
    "XbmConfig": "simplug.training.xbm",
    "Quaterion": "simplug.training.fit",
    "fit": "simplug.training.fit",
    "evaluate": "simplug.training.fit",
    "trainer_defaults": "simplug.training.fit",
    "Evaluator": "simplug.evaluation.evaluator",
    "PairSampler": "simplug.evaluation.evaluator",
    "GroupSampler": "simplug.evaluation.evaluator",
    "AttachedMetric": "simplug.components.metric",
    "SimilarityModel": "simplug.model.similarity_model",
    "PairScoreMetric": "simplug.components.metric",
    "QueryBlock": "simplug.components.ranking",
}

# subpackages reachable as attributes without an explicit import, e.g. simplug.serving.SimilarityModel
_SUBPACKAGES = ("serving", "testing")

__all__ = ["hookimpl", "hookspec", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return import_module(f"simplug.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simplug' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
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
    )
    from simplug.data.loaders import (
        GroupSimilarityDataLoader,
        PairsSimilarityDataLoader,
    )
    from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
    from simplug.evaluation.evaluator import Evaluator, GroupSampler, PairSampler
    from simplug.registry import Registry, get_registry
    from simplug.serving import SimilarityModel
    from simplug.training.cache.config import CacheConfig, CacheType
    from simplug.training.fit import Quaterion
    from simplug.training.trainable import TrainableModel
    from simplug.training.xbm import XbmConfig
