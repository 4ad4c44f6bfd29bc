"""Retrieval metrics: every object with a relevant object is a query against all the others.

Each metric gives one value per query from a ``QueryBlock`` (see ``simplug.components.metric``), so the
same code serves a validation batch and a data set evaluated block by block.
"""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.metric import Metric, check_k
from simplug.components.ranking import QueryBlock
from simplug.errors import DataError
from simplug.registry.building import positive_int


class _AtK(Metric):
    """A metric of each query's k nearest candidates."""

    label = ""

    def __init__(self, k: int = 1, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        self.k = positive_int(k, "k")

    @property
    def name(self) -> str:
        return f"{self.label}@{self.k}"

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "k": self.k}

    def depth(self, block: QueryBlock) -> int:
        return check_k(self.name, self.k, block)


class RetrievalPrecision(_AtK):
    """Precision@k: the share of relevant objects among each query's k nearest neighbours."""

    label = "retrieval_precision"

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        return block.ranked_relevance(self.depth(block)).double().sum(dim=1) / self.k


class Recall(_AtK):
    """Recall@k as a hit rate: 1 for a query when at least one relevant object is among its
    k nearest neighbours, else 0 (the "recall@k" of image-retrieval papers and of
    pytorch-metric-learning's ``precision_at_1`` for k=1). It is not the share of all relevant
    objects found in the top k; ``retrieval_precision`` and ``retrieval_r_precision`` count
    those."""

    label = "recall"

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        return block.ranked_relevance(self.depth(block)).any(dim=1).double()


class RetrievalReciprocalRank(Metric):
    """Reciprocal rank of the first relevant object (later relevant hits do not count)."""

    @property
    def name(self) -> str:
        return "retrieval_reciprocal_rank"

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        return 1.0 / block.first_relevant_rank().double()


class _AtR(Metric):
    """A metric of each query's R nearest candidates, R = its number of relevant objects."""

    def depth(self, block: QueryBlock) -> int:
        return int(block.n_relevant.max()) if len(block.n_relevant) else 0

    def top_r(self, block: QueryBlock) -> tuple[torch.Tensor, torch.Tensor]:
        """Ranked relevance of the R nearest, with positions beyond each query's R masked off."""
        ranked = block.ranked_relevance(self.depth(block))
        positions = torch.arange(ranked.shape[1], device=ranked.device)
        within = positions.unsqueeze(0) < block.n_relevant.unsqueeze(1)
        return ranked & within, block.n_relevant.double()


class RetrievalRPrecision(_AtR):
    """R-precision: the share of relevant objects among each query's R nearest neighbours,
    where R is the number of objects relevant to that query."""

    @property
    def name(self) -> str:
        return "retrieval_r_precision"

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        hits, r = self.top_r(block)
        return hits.double().sum(dim=1) / r


class MapAtR(_AtR):
    """MAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020): for each query with
    R relevant objects, ``(1/R) * sum_{i<=R} P(i) * rel(i)``, where ``P(i)`` is the precision
    among the i nearest neighbours and ``rel(i)`` is 1 when the i-th is relevant."""

    @property
    def name(self) -> str:
        return "map@r"

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        hits, r = self.top_r(block)
        hits = hits.double()
        positions = torch.arange(1, hits.shape[1] + 1, device=hits.device, dtype=torch.float64)
        precision_at_i = hits.cumsum(dim=1) / positions
        return (precision_at_i * hits).sum(dim=1) / r


class KnnAccuracy(_AtK):
    """kNN classification accuracy: 1 for a query when the majority group of its k nearest
    candidates is its own group. A tie in votes goes to the group with the smaller summed
    distance (for cosine: the larger summed similarity), then to the group of the nearer
    candidate. Needs group labels (group data)."""

    label = "knn_accuracy"
    target_kind = "groups"

    def __init__(self, k: int = 10, distance_metric_name: str = "cosine"):
        super().__init__(k=k, distance_metric_name=distance_metric_name)

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        if block.candidate_groups is None or block.query_groups is None:
            raise DataError(f"{self.name} votes with the candidates' groups, so it needs group data (obj, group); "
                            "for pairs use retrieval_precision or recall")
        nearest = block.ranked_indices(self.depth(block))
        groups = block.candidate_groups[nearest]
        distances = block.distances.gather(1, nearest).double()
        # position i's group has votes[:, i] votes and summed distance summed[:, i]
        same = groups.unsqueeze(2) == groups.unsqueeze(1)
        votes = same.sum(dim=2)
        summed = (same * distances.unsqueeze(1)).sum(dim=2)
        most = votes == votes.max(dim=1, keepdim=True).values
        summed = torch.where(most, summed, torch.full_like(summed, float("inf")))
        best = most & (summed == summed.min(dim=1, keepdim=True).values)
        winner = groups.gather(1, best.int().argmax(dim=1, keepdim=True)).squeeze(1)  # argmax: the nearest such
        return (winner == block.query_groups).double()
