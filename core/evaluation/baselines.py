"""Held-out evaluation against labelled training data, and the baselines to show beside it.

A head on a frozen encoder learns the geometry of what it saw, so the honest question is
not "is the metric high" but "is it higher than what the encoder alone, or a plain lookup
of the nearest labelled example, already gives". Every function here answers on the same
footing: held-out queries are matched against what is known at training time.

- Groups: each held-out object is a query; the pool is the training objects with their
  groups. ``precision@1`` (the nearest training object has the query's group: 1-NN
  classification), ``r_precision`` (share of the query's group among its ``R`` nearest,
  ``R`` = that group's size in the pool) and ``knn{k}_accuracy`` (majority vote of the
  ``k`` nearest).
- Pairs: each held-out ``obj_a`` (query side) must find its ``obj_b`` (document side)
  among the distinct ``obj_b`` of training and held-out pairs: ``precision@1``,
  ``reciprocal_rank``, ``recall@10``.

Baselines: ``untrained encoder`` is the model's encoders without the head (call it before
``fit`` when an encoder is trainable, since training changes it); ``nearest labelled
example`` needs no training at all: for groups a query takes the group of its nearest
training objects, for pairs a query takes the ``obj_b`` of its nearest training ``obj_a``
(documents ranked by their best-matching training query).
"""
from __future__ import annotations

import json
from typing import Any, Hashable, Sequence

import torch

from simplug.components.distance import resolve_distance
from simplug.model.similarity_model import SimilarityModel
from simplug.registry import get_registry
from simplug.errors import DataError
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample

UNTRAINED = "untrained encoder"
NEAREST_EXAMPLE = "nearest labelled example"
_CHUNK = 1024  # query rows per similarity block: bounds memory on large pools


# ---------------------------------------------------------------------- metrics on embeddings
def _similarities(queries: torch.Tensor, pool: torch.Tensor, distance: str) -> torch.Tensor:
    metric = resolve_distance(distance)
    return torch.cat([metric.similarity_matrix(block, pool) for block in queries.split(_CHUNK)])


def group_retrieval_metrics(
    query_embeddings: torch.Tensor,
    query_groups: torch.Tensor,
    pool_embeddings: torch.Tensor,
    pool_groups: torch.Tensor,
    distance: str = "cosine",
    knn: int = 10,
) -> dict[str, float]:
    """precision@1, r_precision and knn{k}_accuracy of held-out queries against a labelled pool."""
    query_groups = torch.as_tensor(query_groups).long()
    pool_groups = torch.as_tensor(pool_groups).long()
    sims = _similarities(query_embeddings.float(), pool_embeddings.float(), distance)
    return _group_scores(sims, query_groups, pool_groups, knn)


def _group_scores(sims: torch.Tensor, query_groups: torch.Tensor, pool_groups: torch.Tensor, knn: int) -> dict[str, float]:
    k = min(knn, sims.shape[1])
    order = sims.argsort(dim=1, descending=True, stable=True)
    relevant = pool_groups[order] == query_groups.unsqueeze(1)
    sizes = (pool_groups.unsqueeze(0) == query_groups.unsqueeze(1)).sum(dim=1)
    known = sizes > 0  # a query whose group has no training object cannot be routed by retrieval
    hits_at_r = relevant.cumsum(dim=1).gather(1, (sizes.clamp(min=1) - 1).unsqueeze(1)).squeeze(1)
    r_precision = (hits_at_r[known].float() / sizes[known].float()).mean()
    # majority vote of the k nearest; ties go to the group with the larger summed similarity
    n_groups = int(max(pool_groups.max(), query_groups.max())) + 1
    top_groups = pool_groups[order[:, :k]]
    top_sims = sims.gather(1, order[:, :k]).double().clamp(-1.0, 1.0)
    counts = torch.zeros(len(query_groups), n_groups, dtype=torch.float64).scatter_add_(1, top_groups, torch.ones_like(top_sims))
    summed = torch.zeros_like(counts).scatter_add_(1, top_groups, top_sims)
    # one more vote outweighs any summed similarity (which lies in [-k, k])
    votes = counts * (2 * k + 1) + summed
    return {
        "precision@1": float(relevant[:, 0].float().mean()),
        "r_precision": float(r_precision),
        f"knn{k}_accuracy": float((votes.argmax(dim=1) == query_groups).float().mean()),
    }


def pair_retrieval_metrics(
    query_embeddings: torch.Tensor,
    targets: torch.Tensor,
    document_embeddings: torch.Tensor,
    distance: str = "cosine",
) -> dict[str, float]:
    """precision@1, reciprocal_rank and recall@10 of queries whose answer is
    ``document_embeddings[targets[i]]``."""
    sims = _similarities(query_embeddings.float(), document_embeddings.float(), distance)
    return _pair_scores(sims, torch.as_tensor(targets).long())


def _pair_scores(sims: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    target_sims = sims.gather(1, targets.unsqueeze(1))
    # rank = 1 + documents strictly more similar than the answer (ties in the answer's favour)
    ranks = 1 + (sims > target_sims).sum(dim=1)
    return {
        "precision@1": float((ranks == 1).float().mean()),
        "reciprocal_rank": float((1.0 / ranks.float()).mean()),
        "recall@10": float((ranks <= 10).float().mean()),
    }


# ---------------------------------------------------------------------- data handling
def _object_key(obj: Any) -> Hashable:
    """A value key for an object: equal objects (texts, numbers, equal tensors) share it."""
    if isinstance(obj, torch.Tensor):
        return ("tensor", tuple(obj.shape), obj.detach().cpu().contiguous().numpy().tobytes())
    if hasattr(obj, "__array__") and hasattr(obj, "tobytes"):
        return ("array", tuple(obj.shape), obj.tobytes())
    if isinstance(obj, (str, int, float, bytes, tuple)):
        return obj
    return ("json", json.dumps(obj, sort_keys=True, default=repr))


def _samples(data: Sequence[Any], kind: type, role: str) -> list[Any]:
    samples = [data[i] for i in range(len(data))]
    if not samples:
        raise DataError(f"the {role} data set is empty")
    for i, s in enumerate(samples):
        if not isinstance(s, kind):
            raise DataError(f"item {i} of the {role} data is a {type(s).__name__}, but this evaluation needs {kind.__name__} items")
    return samples


def _data_kind(train: Sequence[Any], heldout: Sequence[Any]) -> str:
    first = heldout[0] if len(heldout) else None
    if isinstance(first, SimilarityGroupSample):
        return "groups"
    if isinstance(first, SimilarityPairSample):
        return "pairs"
    raise DataError(f"held-out data must be SimilarityGroupSample or SimilarityPairSample items, got {type(first).__name__}")


def _encode(model: Any, objects: list[Any], batch_size: int, side: str | None = None) -> torch.Tensor:
    similarity_model = getattr(model, "model", model)
    if side is not None and not similarity_model.sides:
        side = None  # a shared head encodes both sides alike
    return similarity_model.encode(objects, batch_size=batch_size, to_numpy=False, side=side)


class _PairLayout:
    """Held-out queries, the distinct documents of both splits, and each query's answer."""

    def __init__(self, train: Sequence[Any], heldout: Sequence[Any]):
        train_pairs = [s for s in _samples(train, SimilarityPairSample, "training") if s.score > 0]
        held = [s for s in _samples(heldout, SimilarityPairSample, "held-out") if s.score > 0]
        if not held:
            raise DataError("the held-out pairs have no positive score, so no query has an answer to find")
        self.documents: list[Any] = []
        index: dict[Hashable, int] = {}
        for s in train_pairs + held:
            key = _object_key(s.obj_b)
            if key not in index:
                index[key] = len(self.documents)
                self.documents.append(s.obj_b)
        self.queries = [s.obj_a for s in held]
        self.targets = torch.tensor([index[_object_key(s.obj_b)] for s in held])
        self.train_queries = [s.obj_a for s in train_pairs]
        self.train_answers = torch.tensor([index[_object_key(s.obj_b)] for s in train_pairs], dtype=torch.long)


# ---------------------------------------------------------------------- model evaluation
def evaluate_heldout(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
) -> dict[str, float]:
    """Held-out metrics of a model (SimilarityModel or TrainableModel) against the training data."""
    if _data_kind(train, heldout) == "groups":
        train_s = _samples(train, SimilarityGroupSample, "training")
        held_s = _samples(heldout, SimilarityGroupSample, "held-out")
        return group_retrieval_metrics(
            _encode(model, [s.obj for s in held_s], batch_size),
            torch.tensor([int(s.group) for s in held_s]),
            _encode(model, [s.obj for s in train_s], batch_size),
            torch.tensor([int(s.group) for s in train_s]),
            distance=distance,
            knn=knn,
        )
    layout = _PairLayout(train, heldout)
    return pair_retrieval_metrics(
        _encode(model, layout.queries, batch_size, side="query"),
        layout.targets,
        _encode(model, layout.documents, batch_size, side="document"),
        distance=distance,
    )


def encoder_only(model: Any) -> Any:
    """The model's encoders with no head (their concatenated output), as a SimilarityModel."""
    similarity_model = getattr(model, "model", model)
    size = sum(e.embedding_size for e in similarity_model.encoders.values())
    empty_head = get_registry().resolve("heads", "empty")(size)
    return SimilarityModel(dict(similarity_model.encoders.items()), empty_head)


def nearest_example(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
) -> dict[str, float]:
    """Metrics of a lookup with no training: a held-out query takes the label of its nearest
    training example(s), found with ``model``'s embeddings (the untrained encoder in
    :func:`baselines`)."""
    if _data_kind(train, heldout) == "groups":
        # retrieval against the labelled pool is exactly nearest-example routing
        metrics = evaluate_heldout(model, train, heldout, batch_size, distance, knn)
        return {k: v for k, v in metrics.items() if k != "r_precision"}
    layout = _PairLayout(train, heldout)
    if not layout.train_queries:
        raise DataError("the nearest-example lookup needs training pairs with a positive score")
    sims = _similarities(
        _encode(model, layout.queries, batch_size, side="query").float(),
        _encode(model, layout.train_queries, batch_size, side="query").float(),
        distance,
    )
    # a document scores as its best-matching training query; documents no training pair
    # leads to are never proposed
    by_document = torch.full((len(layout.queries), len(layout.documents)), float("-inf"))
    by_document.scatter_reduce_(1, layout.train_answers.expand(len(layout.queries), -1), sims, reduce="amax")
    return _pair_scores(by_document, layout.targets)


def baselines(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
) -> dict[str, dict[str, float]]:
    """``{"untrained encoder": metrics, "nearest labelled example": metrics}`` for ``model``'s
    encoders. Call it before ``fit`` if an encoder is trainable."""
    plain = encoder_only(model)
    return {
        UNTRAINED: evaluate_heldout(plain, train, heldout, batch_size, distance, knn),
        NEAREST_EXAMPLE: nearest_example(plain, train, heldout, batch_size, distance, knn),
    }


def format_comparison(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table, one row per model, one column per metric."""
    columns: list[str] = []
    for metrics in rows.values():
        columns += [c for c in metrics if c not in columns]
    width = max(len(name) for name in rows)
    lines = ["  ".join([" " * width, *(f"{c:>15}" for c in columns)])]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:>15.3f}" if c in metrics else f"{'-':>15}" for c in columns]
        lines.append("  ".join([f"{name:<{width}}", *cells]))
    return "\n".join(lines)
