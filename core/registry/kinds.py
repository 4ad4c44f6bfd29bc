"""The component kinds: the one table that the hook specs, the registry, the command line, the
``new-plugin`` scaffold, the conformance checks of ``simplug.testing`` and the docs all read.

Base classes and checks are named as ``"module:attr"`` strings so that reading the table imports
no torch; they are imported when a component is resolved or checked.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of component."""

    name: str  # plural, as ``simplug list`` shows it
    singular: str
    base: str  # the class every registered class of this kind subclasses
    check: str  # simplug.testing's conformance check for one component of this kind
    description: str
    aliases: tuple[str, ...] = ()
    module: str = ""  # the module name of a generated plugin's component
    class_suffix: str = ""  # the class-name ending of a generated plugin's component

    @property
    def hook(self) -> str:
        return f"register_{self.name}"


KINDS: tuple[Kind, ...] = (
    Kind("encoders", "encoder", "simplug.components.encoder:Encoder", "simplug.testing.checks.encoder:check_encoder",
         "objects turned into embeddings", module="encoder", class_suffix="Encoder"),
    Kind("heads", "head", "simplug.components.head:EncoderHead", "simplug.testing.checks.head:check_head",
         "small trainable layers on top of the encoders", module="head", class_suffix="Head"),
    Kind("losses", "loss", "simplug.components.loss:SimilarityLoss", "simplug.testing.checks.loss:check_loss",
         "similarity losses (PairwiseLoss or GroupLoss)", module="loss", class_suffix="Loss"),
    Kind("distances", "distance", "simplug.components.distance:Distance", "simplug.testing.checks.distance:check_distance",
         "distances and similarities between embeddings", module="distance", class_suffix="Distance"),
    Kind("metrics", "metric", "simplug.components.metric:Metric", "simplug.testing.checks.metric:check_metric",
         "retrieval and pair-scoring metrics", module="metric", class_suffix="Metric"),
    Kind("cache_backends", "cache backend", "simplug.components.cache_backend:CacheBackend",
         "simplug.testing.checks.cache_backend:check_cache_backend", "where cached embeddings of frozen encoders live",
         aliases=("cache", "caches", "cache_backend"), module="cache", class_suffix="Cache"),
    Kind("indexes", "index", "simplug.components.index:VectorIndex", "simplug.testing.checks.index:check_index",
         "vector indexes to search embeddings in", aliases=("index", "indices"), module="index",
         class_suffix="Index"),
)

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
ALIASES: dict[str, str] = {
    alias: kind.name for kind in KINDS for alias in (kind.singular.replace(" ", "_"), *kind.aliases)
}
