"""The conformance check of a metric."""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.metric import Metric, PairScoreMetric
from simplug.components.ranking import QueryBlock, Relevance
from simplug.evaluation.evaluator import Evaluator
from simplug.testing.checks.common import (
    fail,
    generator,
    group_targets,
    label_of,
    pair_targets,
    rebuild,
    shape_of,
    step,
)


def check_metric(metric: Any, name: str | None = None, embedding_size: int = 8) -> None:
    """A finite scalar for the targets it takes, independent of batch order; config round trip."""

    label = label_of("metric", metric, name)
    if not isinstance(metric, Metric):
        fail(f"{label} is a {type(metric).__name__}, not a simplug.components.metric.Metric subclass")
    if not isinstance(metric.name, str) or not metric.name:
        fail(f"{label}: name is {metric.name!r}; it names the logged value, so give a non-empty string")
    kinds = {"pairs": ["pairs"], "groups": ["groups"], "any": ["pairs", "groups"]}.get(metric.target_kind)
    if kinds is None:
        fail(f"{label}: target_kind is {metric.target_kind!r}; use 'pairs', 'groups' or 'any'")
    rebuilt = rebuild(label, metric)
    ranks = not isinstance(metric, PairScoreMetric)
    n = 12
    embeddings = torch.randn(n, embedding_size, generator=generator())
    order = torch.randperm(n, generator=generator(3))
    inverse = torch.argsort(order)
    for kind in kinds:
        targets = pair_targets(n // 2) if kind == "pairs" else group_targets(n)
        with step(label, f"compute(embeddings, {kind} targets)"):
            value = metric.compute(embeddings, targets)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            fail(f"{label}: compute() returned {shape_of(value) if isinstance(value, torch.Tensor) else type(value).__name__} "
                  f"for {kind} targets; a metric returns a scalar tensor")
        if not torch.isfinite(value):
            fail(f"{label}: compute() returned {value.item()} for {kind} targets where every query has a relevant object")
        if kind == "groups":
            shuffled = {"groups": targets["groups"][order]}
        else:
            shuffled = {"pairs": inverse[targets["pairs"]], "labels": targets["labels"],
                        "subgroups": targets["subgroups"][order]}
        with step(label, f"compute on the same {kind} batch in another order"):
            permuted = metric.compute(embeddings[order], shuffled)
        if not torch.allclose(value, permuted, rtol=1e-5, atol=1e-6):
            fail(f"{label}: the value depends on the order of the batch ({value.item()} vs {permuted.item()} "
                  f"for the same {kind} batch shuffled)")
        if ranks:
            _check_blockwise(label, metric, embeddings, targets, value)
        with step(label, "compute after a get_config_dict() round trip"):
            again = rebuilt.compute(embeddings, targets)
        if not torch.allclose(value, again, rtol=1e-5, atol=1e-6):
            fail(f"{label}: get_config_dict() does not round-trip: rebuilt from it the metric gives "
                  f"{again.item()} instead of {value.item()}")


def _check_blockwise(label: str, metric: Any, embeddings: "torch.Tensor", targets: Any, value: "torch.Tensor") -> None:
    """A data set is evaluated a few queries at a time (``simplug.evaluation.evaluator.Evaluator``):
    ``per_query(block)`` must give one value per query of the block, each depending on its
    own query only, so the mean over blocks is what ``compute`` gives for the whole batch."""

    relevance = Relevance(targets, embeddings.shape[0])
    queries = relevance.queries[:3]
    groups = relevance.groups  # for metrics that vote by group (knn_accuracy)
    block = QueryBlock(metric.distance.distance_matrix(embeddings[queries], embeddings), relevance.block(queries), queries,
                       query_groups=None if groups is None else groups[queries], candidate_groups=groups)
    with step(label, f"per_query(block) on a QueryBlock of {len(queries)} queries"):
        block.prepare(metric.depth(block))
        per_query = metric.per_query(block)
    if not isinstance(per_query, torch.Tensor) or shape_of(per_query) != (len(queries),):
        got = shape_of(per_query) if isinstance(per_query, torch.Tensor) else type(per_query).__name__
        fail(f"{label}: per_query(block) returned {got} for a block of {len(queries)} queries; it must "
              f"return one value per query, shape {(len(queries),)}")
    with step(label, "evaluation block by block (Evaluator with block_size=5)"):
        blockwise = Evaluator({"metric": metric}, block_size=5).compute(embeddings, targets)["metric"]
    if not torch.allclose(value.double(), torch.tensor(blockwise, dtype=torch.float64), rtol=1e-5, atol=1e-6):
        fail(f"{label}: evaluated a few queries at a time it gives {blockwise} instead of {value.item()} "
              "for the whole batch; per_query(block) must compute each query's value from its own row "
              "of the block only (use block.ranked_relevance, block.n_relevant, ... rather than "
              "statistics over the block)")
