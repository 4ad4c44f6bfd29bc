"""Metric bases: retrieval and pair-scoring quality of a batch or a whole data set.

Retrieval metrics are computed one block of queries at a time. A ``QueryBlock`` holds the
distances from a few queries to every candidate (one ``(block, N)`` matrix) and the
relevance of each candidate; a metric turns it into one value per query. The mean over all
queries is the metric. ``Metric.compute`` (one batch, e.g. during validation) is the same
computation with the whole batch as a single block, so a data set evaluated block by block
gives exactly what the full matrix would.

Rankings are deterministic: candidates are ordered by distance and, among equal distances,
by their index in the data set (a stable sort). A query never retrieves itself.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from simplug.components.distance import Distance, resolve_distance
from simplug.components.ranking import QueryBlock, Relevance, score_embeddings
from simplug.errors import ConfigError, DataError


# ---------------------------------------------------------------------------- metrics
class Metric:
    """Computes one number from embeddings and the targets of the batch or data set.

    Retrieval metrics implement ``per_query(block)`` (one value per query of a
    ``QueryBlock``) and ``depth(block)`` (how many nearest candidates they look at); the
    ranking engine (``simplug.components.ranking.score_blocks``) ranks each block once for all
    metrics and averages. Queries with no relevant object are skipped in the mean.
    """

    #: "pairs", "groups" or "any"
    target_kind = "any"

    def __init__(self, distance_metric_name: str = "cosine"):
        self.distance_metric_name = distance_metric_name
        self.distance: Distance = resolve_distance(distance_metric_name)

    @property
    def name(self) -> str:
        return type(self).__name__

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric_name": self.distance_metric_name}

    def depth(self, block: QueryBlock) -> int:
        return 0

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        """Mean over the queries that have at least one relevant object (NaN when none has)."""
        embeddings = embeddings.detach()
        n = embeddings.shape[0]
        relevance = Relevance(targets, n)
        value = score_embeddings(
            {self.name: self}, embeddings, embeddings, self.distance, relevance.block,
            queries=relevance.queries, exclude_self=True, query_groups=relevance.groups,
            candidate_groups=relevance.groups, block_size=max(n, 1),  # the whole batch is one block
        )[self.name]
        return torch.tensor(value).float()


def check_k(metric_name: str, k: int, block: QueryBlock) -> int:
    if k > block.n_candidates:
        raise DataError(
            f"{metric_name} needs at least k={k} candidates per query but there are only "
            f"{block.n_candidates}{' (every object but the query itself)' if block.queries is not None else ''}: "
            "lower k or evaluate on more objects"
        )
    return k


def check_positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{argument} must be a positive int, got {value!r}")
    return value


class PairMetric(Metric):
    target_kind = "pairs"


class GroupMetric(Metric):
    target_kind = "groups"


class PairScoreMetric(Metric):
    """A metric of the similarity scores of labelled pairs (not of rankings).

    A pair is positive when its score (label) is above ``positive_above``. On group targets
    every two objects of the batch form a pair, positive when they share a group.
    Subclasses implement ``from_scores(similarities, positive)``.
    """

    target_kind = "pairs"

    def __init__(self, distance_metric_name: str = "cosine", positive_above: float = 0.0):
        super().__init__(distance_metric_name=distance_metric_name)
        self.positive_above = float(positive_above)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "positive_above": self.positive_above}

    def from_scores(self, similarities: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_scores(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if "pairs" in targets:
            pairs = torch.as_tensor(targets["pairs"], device=embeddings.device).long().reshape(-1, 2)
            labels = torch.as_tensor(targets["labels"], device=embeddings.device).reshape(-1)
            a, b = pairs[:, 0], pairs[:, 1]
            positive = labels > self.positive_above
        elif "groups" in targets:
            groups = torch.as_tensor(targets["groups"], device=embeddings.device)
            a, b = torch.triu_indices(len(groups), len(groups), offset=1, device=embeddings.device)
            positive = groups[a] == groups[b]
        else:
            raise DataError(f"metric targets need 'groups' or 'pairs', got keys {sorted(targets)}")
        return self.distance.similarity(embeddings[a], embeddings[b]), positive

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        """NaN when the batch lacks positive or negative pairs."""
        similarities, positive = self.pair_scores(embeddings.detach(), targets)
        if positive.all() or not positive.any():
            return torch.tensor(float("nan"))
        return self.from_scores(similarities.double(), positive).float()


