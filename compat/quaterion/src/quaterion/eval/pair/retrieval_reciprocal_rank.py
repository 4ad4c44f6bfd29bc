from typing import Callable, Optional

import torch

from quaterion.distances import Distance
from quaterion.eval.pair.pair_metric import PairMetric


def retrieval_reciprocal_rank(distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1 / rank`` of every relevant entry in its row's ranking, as the original computes it (one
    value per relevant entry; with one relevant object per row, one value per row)."""
    ranked = labels.gather(1, torch.argsort(distance_matrix, dim=1))
    positions = torch.nonzero(ranked)
    return 1.0 / (positions[:, 1] + 1.0)


class RetrievalReciprocalRank(PairMetric):
    def __init__(self, distance_metric_name: Distance = Distance.COSINE, reduce_func: Optional[Callable] = torch.mean):
        super().__init__(distance_metric_name=distance_metric_name)
        self.reduce_func = reduce_func

    def raw_compute(self, distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        value = retrieval_reciprocal_rank(distance_matrix, labels)
        return self.reduce_func(value) if self.reduce_func is not None else value
