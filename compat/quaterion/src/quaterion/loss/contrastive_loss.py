from typing import Any, Dict

import torch
from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.loss.pairwise_loss import PairwiseLoss


class ContrastiveLoss(PairwiseLoss):
    """``0.5 * (y * d^2 + (1 - y) * relu(margin - d)^2)`` per pair, with ``d`` the row-wise distance;
    when the batch has several subgroups, each pair also adds ``relu(margin - n)^2`` for the closest
    other-subgroup object ``n`` of each side (measured with ``distance_matrix``)."""

    def __init__(self, distance_metric_name: Distance = Distance.COSINE, margin: float = 0.5, size_average: bool = True):
        super().__init__(distance_metric_name=distance_metric_name)
        self.margin = margin
        self.size_average = size_average

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "margin": self.margin, "size_average": self.size_average}

    def forward(self, embeddings: Tensor, pairs: LongTensor, labels: Tensor, subgroups: Tensor, **kwargs) -> Tensor:
        distances = self.distance_metric.distance(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
        labels = labels.float()
        losses = 0.5 * (labels * distances.pow(2) + (1 - labels) * torch.relu(self.margin - distances).pow(2))
        if subgroups.numel() and len(subgroups.unique()) > 1:
            other_subgroup = subgroups.unsqueeze(0) != subgroups.unsqueeze(1)
            matrix = self.distance_metric.distance_matrix(embeddings)
            matrix = matrix.masked_fill(~other_subgroup, torch.finfo(matrix.dtype).max)
            closest_negative = matrix.min(dim=1).values
            losses = losses + torch.relu(self.margin - closest_negative[pairs[:, 0]]).pow(2) \
                + torch.relu(self.margin - closest_negative[pairs[:, 1]]).pow(2)
        return losses.mean() if self.size_average else losses.sum()
