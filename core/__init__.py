"""simplug: fine-tune similarity-learning models from pluggable components.

``import simplug`` stays light (no torch): everything heavy is resolved lazily on
first attribute access (PEP 562), so plugin hook modules and ``simplug list`` are cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from simplug.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Registry": "simplug.registry",
    "get_registry": "simplug.registry",
    "SimplugError": "simplug.errors",
    "SimilarityPairSample": "simplug.samples",
    "SimilarityGroupSample": "simplug.samples",
    "SimilarityGroupDataset": "simplug.samples",
    "PairsSimilarityDataLoader": "simplug.dataloader",
    "GroupSimilarityDataLoader": "simplug.dataloader",
    "Encoder": "simplug.encoder",
    "EncoderHead": "simplug.head",
    "SimilarityLoss": "simplug.loss",
    "PairwiseLoss": "simplug.loss",
    "GroupLoss": "simplug.loss",
    "Distance": "simplug.distance",
    "Metric": "simplug.metric",
    "PairMetric": "simplug.metric",
    "GroupMetric": "simplug.metric",
    "CacheBackend": "simplug.cache",
    "TrainableModel": "simplug.trainable",
    "XbmConfig": "simplug.xbm",
    "Quaterion": "simplug.quaterion",
    "fit": "simplug.quaterion",
    "evaluate": "simplug.quaterion",
    "trainer_defaults": "simplug.quaterion",
    "Evaluator": "simplug.evaluation",
    "PairSampler": "simplug.evaluation",
    "GroupSampler": "simplug.evaluation",
    "AttachedMetric": "simplug.metric",
    "SimilarityModel": "simplug.serving",
}

__all__ = ["hookimpl", "hookspec", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simplug' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from simplug.dataloader import GroupSimilarityDataLoader, PairsSimilarityDataLoader
    from simplug.distance import Distance
    from simplug.encoder import Encoder
    from simplug.evaluation import Evaluator, GroupSampler, PairSampler
    from simplug.metric import AttachedMetric, GroupMetric, Metric, PairMetric
    from simplug.head import EncoderHead
    from simplug.loss import GroupLoss, PairwiseLoss, SimilarityLoss
    from simplug.quaterion import Quaterion
    from simplug.registry import Registry, get_registry
    from simplug.samples import SimilarityGroupSample, SimilarityPairSample
    from simplug.serving import SimilarityModel
    from simplug.trainable import TrainableModel
    from simplug.xbm import XbmConfig
