from __future__ import annotations

from typing import Any

import torch
from simplug.components.loss import ProxyGroupLoss
from torch import nn


class CenterLoss(ProxyGroupLoss):
    """Center loss (Wen et al., 2016): ``lambda_c * mean(d(x, c_group)^2)`` between each
    embedding and a learned centre of its group (``centers``: ``(num_groups, embedding_size)``).

    It only pulls groups together and never pushes them apart, so on its own it can shrink
    every group onto one point; it is meant to sharpen groups that another signal (a frozen
    encoder with a gentle head, or a second loss) keeps apart.
    """

    def __init__(
        self, embedding_size: int, num_groups: int, lambda_c: float = 0.5, distance_metric_name: str = "euclidean"
    ):
        super().__init__(embedding_size, num_groups, distance_metric_name=distance_metric_name)
        self.lambda_c = float(lambda_c)
        self.centers = nn.Parameter(torch.randn(num_groups, embedding_size))

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "lambda_c": self.lambda_c, "distance_metric_name": self.distance_metric_name}

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        centers = self.centers.to(embeddings.dtype)[groups]
        return self.lambda_c * self.distance_metric.distance(embeddings, centers).pow(2).mean()
