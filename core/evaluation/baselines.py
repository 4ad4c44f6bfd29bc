"""Held-out evaluation against labelled training data, and the baselines to show beside it.

A head on a frozen encoder learns the geometry of what it saw, so the honest question is
not "is the metric high" but "is it higher than what the encoder alone, or a plain lookup
of the nearest labelled example, already gives". Every function here answers on the same
footing, the protocol of ``simplug train``'s table (``simplug.evaluation.heldout``), scored
by the one ranking engine with the metric plugins' names:

- Groups: each held-out object is a query; the candidates are the training objects with
  their groups. Default metrics: ``retrieval_precision@1`` (1-NN classification),
  ``retrieval_r_precision`` and ``knn_accuracy@k`` (majority vote of the ``k`` nearest).
- Pairs: each distinct held-out ``obj_a`` must find its ``obj_b`` among the distinct
  ``obj_b`` of both splits. Default metrics: ``retrieval_precision@1``,
  ``retrieval_reciprocal_rank``, ``recall@10``.

Baselines: ``untrained encoder`` is the model's encoders without the head (call it before
``fit`` when an encoder is trainable, since training changes it); ``nearest labelled
example`` needs no training at all: for groups a query takes the group of its nearest
training objects (which is retrieval against them), for pairs a document is ranked by its
best-matching training query (documents no training pair leads to come last).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from simplug.components.ranking import score_blocks
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
from simplug.errors import DataError
from simplug.evaluation.heldout import HeldOutScorer, encoder_only, retrieval_task
from simplug.evaluation.retrieval import ObjectIndex, build_metrics

UNTRAINED = "untrained encoder"
NEAREST_EXAMPLE = "nearest labelled example"
NO_TRAINING_ANSWER = "the nearest-example lookup needs training pairs with a positive score"

__all__ = ["UNTRAINED", "NEAREST_EXAMPLE", "baseline_metric_specs", "evaluate_heldout", "nearest_example",
           "nearest_answer_scores", "baselines", "encoder_only", "format_comparison"]


def baseline_metric_specs(kind: str, knn: int = 10) -> list[dict[str, Any]]:
    """The default metrics of this module (see the module's docstring)."""
    if kind == "groups":
        return [{"name": "retrieval_precision", "k": 1}, {"name": "retrieval_r_precision"},
                {"name": "knn_accuracy", "k": knn}]
    return [{"name": "retrieval_precision", "k": 1}, {"name": "retrieval_reciprocal_rank"}, {"name": "recall", "k": 10}]


# ---------------------------------------------------------------------- data handling
def _samples(data: Sequence[Any], kind: type, role: str) -> list[Any]:
    samples = [data[i] for i in range(len(data))]
    if not samples:
        raise DataError(f"the {role} data set is empty")
    for i, s in enumerate(samples):
        if not isinstance(s, kind):
            raise DataError(f"item {i} of the {role} data is a {type(s).__name__}, but this evaluation needs {kind.__name__} items")
    return samples


def _task(train: Sequence[Any], heldout: Sequence[Any]) -> tuple[str, list[Any], list[Any], Any]:
    """The data kind, the checked samples of both splits, and the held-out retrieval task."""
    first = heldout[0] if len(heldout) else None
    if isinstance(first, SimilarityGroupSample):
        kind, sample_type = "groups", SimilarityGroupSample
    elif isinstance(first, SimilarityPairSample):
        kind, sample_type = "pairs", SimilarityPairSample
    else:
        raise DataError(f"held-out data must be SimilarityGroupSample or SimilarityPairSample items, got {type(first).__name__}")
    train_s = _samples(train, sample_type, "training")
    held_s = _samples(heldout, sample_type, "held-out")
    if kind == "pairs" and not any(s.score > 0 for s in held_s):
        raise DataError("the held-out pairs have no positive score, so no query has an answer to find")
    return kind, train_s, held_s, retrieval_task(kind, held_s, train_s)


def _metrics(kind: str, metrics: Sequence[Any] | None, knn: int) -> list[Any]:
    return list(metrics) if metrics is not None else baseline_metric_specs(kind, knn)


# ---------------------------------------------------------------------- model evaluation
def evaluate_heldout(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
    metrics: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Held-out metrics of a model (SimilarityModel or TrainableModel) against the training data."""
    kind, _, _, task = _task(train, heldout)
    scorer = HeldOutScorer(task, distance, batch_size=batch_size, metrics=_metrics(kind, metrics, knn))
    return scorer.score(getattr(model, "model", model))


def nearest_example(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
    metrics: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Metrics of a lookup with no training: a held-out query takes the label of its nearest
    training example(s), found with ``model``'s embeddings (the untrained encoder in
    :func:`baselines`)."""
    kind, train_s, _, task = _task(train, heldout)
    if kind == "groups":
        # retrieval against the labelled pool is exactly nearest-example routing
        return evaluate_heldout(model, train, heldout, batch_size, distance, knn, metrics)
    similarity_model = getattr(model, "model", model)
    side = "query" if similarity_model.sides else None
    answered = [s for s in train_s if s.score > 0]
    if not answered:
        raise DataError(NO_TRAINING_ANSWER)
    queries = similarity_model.encode(task.queries, batch_size=batch_size, to_numpy=False, side=side)
    train_queries = similarity_model.encode([s.obj_a for s in answered], batch_size=batch_size, to_numpy=False, side=side)
    return nearest_answer_scores(task, answered, queries, train_queries, build_metrics(_metrics(kind, metrics, knn), distance))


def nearest_answer_scores(task: Any, answered: Sequence[Any], queries: torch.Tensor, train_queries: torch.Tensor,
                          metrics: Mapping[str, Any]) -> dict[str, float]:
    """The nearest-example lookup of a pair task from embeddings: ``queries`` of the task's
    queries, ``train_queries`` of the ``obj_a`` of ``answered`` (the positive training pairs).
    A document is as far from a query as its best-matching training query."""
    if not answered:
        raise DataError(NO_TRAINING_ANSWER)
    documents = ObjectIndex()
    for candidate in task.candidates:
        documents.add(candidate)
    answers = torch.tensor([documents.add(s.obj_b) for s in answered], dtype=torch.long)
    if len(documents) != len(task.candidates):
        raise DataError("a training answer is not among the task's candidates; build the task with the training pairs")
    by_distance: dict[str, dict[str, Any]] = {}
    for key, metric in metrics.items():
        by_distance.setdefault(repr(metric.distance), {})[key] = metric
    results: dict[str, float] = {}
    for group in by_distance.values():
        measure = next(iter(group.values())).distance

        def distances_of(rows: torch.Tensor) -> torch.Tensor:
            # documents no training pair leads to are the farthest of all
            to_train = measure.distance_matrix(queries[rows.to(queries.device)], train_queries)
            far = torch.finfo(to_train.dtype).max
            by_document = torch.full((len(rows), len(documents)), far, dtype=to_train.dtype, device=to_train.device)
            index = answers.to(to_train.device).expand(len(rows), -1)
            return by_document.scatter_reduce_(1, index, to_train, reduce="amin")

        results.update(score_blocks(group, torch.arange(len(task.queries)), distances_of, task.relevant))
    return {key: results[key] for key in metrics}


def baselines(
    model: Any,
    train: Sequence[Any],
    heldout: Sequence[Any],
    batch_size: int = 64,
    distance: str = "cosine",
    knn: int = 10,
    metrics: Sequence[Any] | None = None,
) -> dict[str, dict[str, float]]:
    """``{"untrained encoder": metrics, "nearest labelled example": metrics}`` for ``model``'s
    encoders. Call it before ``fit`` if an encoder is trainable."""
    plain = encoder_only(model)
    return {
        UNTRAINED: evaluate_heldout(plain, train, heldout, batch_size, distance, knn, metrics),
        NEAREST_EXAMPLE: nearest_example(plain, train, heldout, batch_size, distance, knn, metrics),
    }


def format_comparison(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table, one row per model, one column per metric."""
    columns: list[str] = []
    for metrics in rows.values():
        columns += [c for c in metrics if c not in columns]
    width = max(len(name) for name in rows)
    cell = max(15, *(len(c) for c in columns))
    lines = ["  ".join([" " * width, *(f"{c:>{cell}}" for c in columns)])]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:>{cell}.3f}" if c in metrics else f"{'-':>{cell}}" for c in columns]
        lines.append("  ".join([f"{name:<{width}}", *cells]))
    return "\n".join(lines)
