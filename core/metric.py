"""Metric bases: retrieval quality of a batch or a whole data set of embeddings."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from simplug.distance import Distance, resolve_distance
from simplug.errors import DataError


def relevance_matrix(targets: Mapping[str, Any], n: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(n, n)``: ``[i, j]`` is True when object ``j`` is a relevant answer to query ``i``.

    Groups: same group. Pairs: the two sides of a pair with a positive score, both ways.
    The diagonal (an object and itself) is never relevant.
    """
    if "groups" in targets:
        groups = torch.as_tensor(targets["groups"], device=device)
        rel = groups.unsqueeze(0) == groups.unsqueeze(1)
    elif "pairs" in targets:
        pairs = torch.as_tensor(targets["pairs"], device=device)
        labels = torch.as_tensor(targets["labels"], device=device)
        rel = torch.zeros(n, n, dtype=torch.bool, device=device)
        keep = labels > 0
        a, b = pairs[keep, 0], pairs[keep, 1]
        rel[a, b] = True
        rel[b, a] = True
    else:
        raise DataError(f"metric targets need 'groups' or 'pairs', got keys {sorted(targets)}")
    rel.fill_diagonal_(False)
    return rel


class Metric:
    """Computes one number from embeddings and the targets of the batch.

    Subclasses implement ``compute_from_distances(distance_matrix, relevance)`` returning one
    value per query; queries with no relevant object are skipped in the mean.
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

    def per_query(self, distances: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        """Mean over the queries that have at least one relevant object."""
        embeddings = embeddings.detach()
        n = embeddings.shape[0]
        relevance = relevance_matrix(targets, n, device=embeddings.device)
        distances = self.distance.distance_matrix(embeddings).clone()
        distances.fill_diagonal_(float("inf"))  # an object never retrieves itself
        has_relevant = relevance.any(dim=1)
        if not has_relevant.any():
            return torch.tensor(float("nan"))
        values = self.per_query(distances[has_relevant], relevance[has_relevant])
        return values.float().mean()


class PairMetric(Metric):
    target_kind = "pairs"


class GroupMetric(Metric):
    target_kind = "groups"
