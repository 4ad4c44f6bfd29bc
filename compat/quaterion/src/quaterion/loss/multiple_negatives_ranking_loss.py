from typing import Any, Dict

import torch
from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.distances import Distance
from quaterion.loss.pairwise_loss import PairwiseLoss


class MultipleNegativesRankingLoss(PairwiseLoss):
    """Cross entropy of ``scale * similarity_matrix(anchors, positives)`` with the diagonal as the
    targets. With cosine the similarity matrix is the original's ``(cos + 1) / 2``, so the logits are
    ``scale/2 * cos + scale/2`` (simplug's own loss uses ``scale * cos``)."""

    def __init__(self, scale: float = 20.0, distance_metric_name: Distance = Distance.COSINE, symmetric: bool = False):
        super().__init__(distance_metric_name=distance_metric_name)
        self._scale = scale
        self._symmetric = symmetric

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "scale": self._scale, "symmetric": self._symmetric}

    def forward(self, embeddings: Tensor, pairs: LongTensor, labels: Tensor, subgroups: Tensor, **kwargs) -> Tensor:
        if labels is not None and labels.numel() and not bool((labels == 1).all()):
            raise ValueError(
                "MultipleNegativesRankingLoss takes positive pairs only: every SimilarityPairSample "
                "needs score=1 (obj_a and obj_b alike)"
            )
        logits = self.distance_metric.similarity_matrix(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]) * self._scale
        targets = torch.arange(logits.shape[0], device=logits.device)
        loss = F.cross_entropy(logits, targets)
        if self._symmetric:
            loss = (loss + F.cross_entropy(logits.T, targets)) / 2
        return loss
