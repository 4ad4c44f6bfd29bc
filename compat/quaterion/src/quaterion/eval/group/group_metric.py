import torch
from torch import Tensor

from quaterion.distances import Distance
from quaterion.eval.accumulators import GroupAccumulator
from quaterion.eval.base_metric import BaseMetric


class GroupMetric(BaseMetric):
    """Object j is relevant to object i when they share a group (i itself excluded)."""

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)
        self.accumulator = GroupAccumulator()

    def update(self, embeddings: Tensor, groups: torch.LongTensor, device=None) -> None:
        self.accumulator.update(embeddings, groups, device)

    def reset(self) -> None:
        self.accumulator.reset()

    @staticmethod
    def prepare_labels(groups: Tensor) -> Tensor:
        same = groups.unsqueeze(0) == groups.unsqueeze(1)
        same[torch.eye(same.shape[0], dtype=torch.bool, device=same.device)] = False
        return same

    def compute(self, embeddings: Tensor, groups: Tensor) -> Tensor:
        labels, distance_matrix = self.precompute(embeddings, groups=groups)
        return self.raw_compute(distance_matrix, labels)

    def evaluate(self) -> Tensor:
        return self.compute(**self.accumulator.state)
