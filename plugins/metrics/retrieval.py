from __future__ import annotations

from typing import Any

import torch

from simplug.errors import DataError
from simplug.metric import Metric


class RetrievalPrecision(Metric):
    """Precision@k: the share of relevant objects among each query's k nearest neighbours."""

    def __init__(self, k: int = 1, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = k

    @property
    def name(self) -> str:
        return f"retrieval_precision@{self.k}"

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "k": self.k}

    def per_query(self, distances: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        candidates = distances.shape[1] - 1  # every object but the query itself
        if self.k > candidates:
            raise DataError(
                f"precision@{self.k} needs at least {self.k} candidates per query but there are "
                f"{candidates}: lower k or evaluate on more objects"
            )
        nearest = distances.topk(self.k, dim=1, largest=False).indices
        return relevance.gather(1, nearest).float().mean(dim=1)


class RetrievalReciprocalRank(Metric):
    """Reciprocal rank of the first relevant object (later relevant hits do not count)."""

    @property
    def name(self) -> str:
        return "retrieval_reciprocal_rank"

    def per_query(self, distances: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        order = distances.argsort(dim=1, stable=True)
        ranked = relevance.gather(1, order)
        first = ranked.float().argmax(dim=1)  # index of the first True
        return 1.0 / (first.float() + 1.0)
