"""``check_index``: the contract every vector index backend passes (see ``simplug.components.index``).

A plugin author runs it on their class (or a factory taking ``(location, collection=...)``)::

    from simplug.testing import check_index
    check_index(MyIndex)

Checked, against an exact numpy search as the reference: a new collection has no info until
created, and keeps the info it was created with across a reopen; upserting the same ids twice
leaves one point per id; ``search`` returns the k best by the distance, best first, with ids and
payloads, for cosine, dot_product, euclidean and manhattan (those the backend lists); a payload
filter restricts the hits; ``k`` of 0 or larger than the collection, and vectors of the wrong
width, are refused; creating an existing collection is refused; ``close`` twice is harmless.
"""
from __future__ import annotations

import tempfile
from typing import Any, Callable

import numpy as np
from simplug.components.index import INDEX_DISTANCES, IndexInfo, VectorIndex
from simplug.testing import ConformanceError


def _reference_scores(distance: str, queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Larger = more alike, by a plain loop over the pairs (the independent reference)."""
    scores = np.empty((len(queries), len(points)))
    for i, q in enumerate(queries):
        for j, p in enumerate(points):
            if distance == "cosine":
                scores[i, j] = float(q @ p) / (np.linalg.norm(q) * np.linalg.norm(p))
            elif distance == "dot_product":
                scores[i, j] = float(q @ p)
            elif distance == "euclidean":
                scores[i, j] = -float(np.sqrt(((q - p) ** 2).sum()))
            else:
                scores[i, j] = -float(np.abs(q - p).sum())
    return scores


def _expect_error(label: str, what: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any error with a message is a refusal
        if not str(exc):
            raise ConformanceError(f"{label}: {what} raised {type(exc).__name__} without a message") from None
        return
    raise ConformanceError(f"{label}: {what} was accepted; it must raise an error naming the problem")


def check_index(index_factory: Callable[..., VectorIndex], name: str | None = None, dimension: int = 8,
                points: int = 40) -> None:
    """Run the contract on a backend; raises ``ConformanceError`` saying what broke."""
    label = f"index {name or getattr(index_factory, '__name__', type(index_factory).__name__)!r}"
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(points, dimension)).astype(np.float32)
    queries = rng.normal(size=(5, dimension)).astype(np.float32)
    ids = [f"item-{i}" for i in range(points)]
    payloads = [{"parity": "even" if i % 2 == 0 else "odd", "n": i} for i in range(points)]
    with tempfile.TemporaryDirectory(prefix="simplug-check-index-") as folder:
        first = index_factory(folder, collection="check")
        if not isinstance(first, VectorIndex):
            raise ConformanceError(f"{label} built a {type(first).__name__}, not a simplug VectorIndex")
        distances = [d for d in INDEX_DISTANCES if d in first.distances]
        if not distances:
            raise ConformanceError(f"{label} lists no distance of {INDEX_DISTANCES} in .distances")
        try:
            if first.info() is not None:
                raise ConformanceError(f"{label}: info() of a collection never created must be None")
            info = IndexInfo(dimension=dimension, distance=distances[0], model_fingerprint="f" * 64, model_path="m")
            first.create(info)
            _expect_error(label, "create() of an existing collection", lambda: first.create(info))
            first.upsert(ids[:10], vectors[:10], payloads[:10])
            first.upsert(ids, vectors, payloads)  # the first ten again: replaced, not added
            if first.count() != points:
                raise ConformanceError(f"{label}: upserting {points} ids (ten of them twice) left {first.count()} points; "
                                       "an id that exists must be replaced")
        finally:
            first.close()
        first.close()  # twice is harmless

        reopened = index_factory(folder, collection="check")
        try:
            if reopened.info() != info:
                raise ConformanceError(f"{label}: after a reopen info() is {reopened.info()!r}, not {info!r}")
            if reopened.count() != points:
                raise ConformanceError(f"{label}: after a reopen the collection holds {reopened.count()} of {points} points")
            _expect_error(label, "search with k=0", lambda: reopened.search(queries, 0))
            _expect_error(label, f"search with k={points + 1} (more than the collection)",
                          lambda: reopened.search(queries, points + 1))
            _expect_error(label, "search with vectors of the wrong width",
                          lambda: reopened.search(queries[:, : dimension - 1], 3))
            filtered = reopened.search(queries, 5, where={"parity": "odd"})
            for hits in filtered:
                if len(hits) != 5 or any(hit.payload.get("parity") != "odd" for hit in hits):
                    raise ConformanceError(f"{label}: a search filtered on parity=odd returned {[h.payload for h in hits]}")
        finally:
            reopened.close()

        for distance in distances:
            index = index_factory(folder, collection=f"check-{distance}")
            try:
                index.create(IndexInfo(dimension=dimension, distance=distance, model_fingerprint="f" * 64))
                index.upsert(ids, vectors, payloads)
                results = index.search(queries, 5)
            finally:
                index.close()
            reference = _reference_scores(distance, queries, vectors)
            for q, hits in enumerate(results):
                expected = [ids[j] for j in np.argsort(-reference[q], kind="stable")[:5]]
                got = [hit.id for hit in hits]
                if got != expected and not index.exact:
                    continue  # an approximate backend may differ; its recall is measured elsewhere
                if got != expected:
                    raise ConformanceError(f"{label}: the top 5 of query {q} by {distance} are {got}, expected {expected}")
                scores = [hit.score for hit in hits]
                if not np.allclose(scores, reference[q, [ids.index(i) for i in got]], rtol=1e-4, atol=1e-4):
                    raise ConformanceError(f"{label}: {distance} scores {scores} differ from the reference "
                                           f"{reference[q, [ids.index(i) for i in got]].tolist()} (larger = more alike)")
                if hits[0].payload.get("n") != ids.index(hits[0].id):
                    raise ConformanceError(f"{label}: a hit's payload {hits[0].payload} is not its point's")
