from typing import Callable, Optional

import torch

from quaterion.distances import Distance
from quaterion.eval.pair.pair_metric import PairMetric


def retrieval_precision(distance_matrix: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: the summed relevance of its ``k`` nearest, divided by ``k``."""
    nearest = distance_matrix.topk(k, dim=-1, largest=False).indices
    return labels.gather(1, nearest).sum(dim=1).float() / k


class RetrievalPrecision(PairMetric):
    def __init__(self, k=1, distance_metric_name: Distance = Distance.COSINE,
                 reduce_func: Optional[Callable] = torch.mean):
        super().__init__(distance_metric_name=distance_metric_name)
        if k < 1:
            raise ValueError("k must be greater than 0")
        self.k = k
        self.reduce_func = reduce_func

    def raw_compute(self, distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        value = retrieval_precision(distance_matrix, labels, self.k)
        return self.reduce_func(value) if self.reduce_func is not None else value
