"""The vector index contract: a named collection of vectors with ids and payloads, searched by k-NN.

An index backend (Qdrant built in; faiss, usearch or LanceDB as outside plugins) subclasses
:class:`VectorIndex` and registers through ``register_indexes``. Everything simplug does with an
index (``simplug index``, ``simplug search``, ``POST /search``, evaluation through an index) goes
through these methods alone, so a backend that passes ``simplug.testing``'s ``check_index``
works everywhere.

The contract, in short:

- ``VectorIndex(location, collection=..., **options)`` opens a backend; ``location`` is a folder
  for an embedded index or a URL for a server. Nothing is created until ``create``.
- ``info()`` is the :class:`IndexInfo` the collection was created with (dimension, distance and
  the model that built it), or ``None`` when the collection does not exist.
- ``create(info)`` makes the collection; creating one that exists is an error.
- ``upsert(ids, vectors, payloads)`` writes points; an id that exists is replaced, so writing the
  same data again never duplicates it. Ids are strings (any text): backends map them to their
  own id types deterministically.
- ``search(vectors, k, where=None)`` is a list, per query vector, of at most ``k`` :class:`Hit`
  (best first, ``score`` larger = more alike), restricted to points whose payload has the
  values in ``where`` (``{"field": value}``, all must match).
- ``count()``, ``close()``; an index is a context manager.

This module imports no torch: a serving host that searches needs numpy only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from simplug.errors import SimplugError

#: distances an index must be able to search with, by the names of simplug's distance plugins
INDEX_DISTANCES = ("cosine", "dot_product", "euclidean", "manhattan")


class VectorIndexError(SimplugError):
    """Base of the errors an index raises on purpose."""


class IndexUnavailableError(VectorIndexError):
    """The index cannot be reached or opened (a server that does not answer, a locked folder)."""


class CollectionNotFoundError(VectorIndexError, LookupError):
    """The collection searched or described does not exist."""


class IndexMismatchError(VectorIndexError, ValueError):
    """The index was built by another model, with another distance or another vector size."""


@dataclass(frozen=True)
class IndexInfo:
    """What a collection was created with; stored with it and checked on every use."""

    dimension: int
    distance: str
    #: fingerprint of the model that built the index (see ``model_fingerprint``)
    model_fingerprint: str
    #: where that model was loaded from, for messages only
    model_path: str = ""
    #: which side of a two-tower model the stored vectors are ("document" for most indexes)
    side: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IndexInfo":
        try:
            return cls(
                dimension=int(data["dimension"]),
                distance=str(data["distance"]),
                model_fingerprint=str(data["model_fingerprint"]),
                model_path=str(data.get("model_path", "")),
                side=data.get("side"),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexMismatchError(
                f"the index's description is damaged or was not written by simplug ({exc!r}); "
                "index the data again into a new collection"
            ) from None


@dataclass(frozen=True)
class Hit:
    """One search result: the point's id, its score (larger = more alike) and its payload."""

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "payload": self.payload}


class VectorIndex:
    """Base of every index backend; see the module docstring for the contract."""

    name: str = ""
    #: True when ``search`` returns the exact k nearest (no approximation)
    exact: bool = False
    #: the distances this backend searches with (a subset of ``INDEX_DISTANCES``)
    distances: tuple[str, ...] = INDEX_DISTANCES

    def __init__(self, location: str, collection: str = "simplug", **options: Any):
        self.location = location
        self.collection = collection
        self.options = options

    # -- the contract -------------------------------------------------------
    def info(self) -> IndexInfo | None:
        raise NotImplementedError

    def create(self, info: IndexInfo) -> None:
        raise NotImplementedError

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def search(self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[list[Hit]]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and file locks; safe to call twice."""

    # -- shared behaviour ---------------------------------------------------
    def describe(self) -> str:
        """``collection 'name' at location`` for messages."""
        return f"collection {self.collection!r} at {self.location}"

    def require_info(self) -> IndexInfo:
        """The collection's info, or ``CollectionNotFoundError`` saying how to make it."""
        info = self.info()
        if info is None:
            raise CollectionNotFoundError(
                f"there is no {self.describe()}; build it first with `simplug index MODEL DATA --index "
                f"{self.location} --collection {self.collection}`"
            )
        return info

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, collection={self.collection!r})"


def check_search_arguments(vectors: np.ndarray, k: Any, dimension: int, size: int) -> np.ndarray:
    """Validate what ``search`` gets; backends call this before searching.

    ``k`` must be a positive int no larger than the collection (``size`` points), and the vectors
    a 2-D float array with ``dimension`` columns.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}")
    if k > size:
        raise ValueError(f"k={k} is larger than the collection, which holds {size} points; ask for k <= {size}")
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise IndexMismatchError(
            f"query vectors of shape {tuple(array.shape)} do not fit an index of {dimension}-dimensional "
            "vectors; encode the queries with the model that built the index"
        )
    if not np.isfinite(array).all():
        raise ValueError("query vectors hold NaN or infinite values")
    return array


__all__ = [
    "INDEX_DISTANCES",
    "CollectionNotFoundError",
    "Hit",
    "VectorIndexError",
    "IndexInfo",
    "IndexMismatchError",
    "IndexUnavailableError",
    "VectorIndex",
    "check_search_arguments",
]
