from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.loss import PairwiseLoss
from simplug.errors import DataError


class MultipleNegativesRankingLoss(PairwiseLoss):
    """Softmax cross-entropy of each ``obj_a`` against every ``obj_b`` in the batch.

    Only pairs with a positive score are anchors. When the batch has more than one
    subgroup, candidates of the anchor's own subgroup (other than its partner) are not
    used as negatives. ``symmetric=True`` adds the ``obj_b -> obj_a`` direction.
    """

    def __init__(self, scale: float = 20.0, distance_metric_name: str = "cosine", symmetric: bool = False):
        super().__init__(distance_metric_name=distance_metric_name)
        self.scale = float(scale)
        self.symmetric = bool(symmetric)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "scale": self.scale, "symmetric": self.symmetric}

    def compute(self, embeddings, pairs, labels, subgroups):  # type: ignore[override]
        positive = labels > 0
        if not positive.any():
            raise DataError(
                "multiple_negatives_ranking needs pairs with a positive score in every batch; "
                "this batch has none (all scores <= 0)"
            )
        rep_a = embeddings[pairs[:, 0]]
        rep_b = embeddings[pairs[:, 1]]
        logits = self.distance_metric.similarity_matrix(rep_a, rep_b) * self.scale
        sub_a = subgroups[pairs[:, 0]]
        sub_b = subgroups[pairs[:, 1]]
        if (subgroups != subgroups[0]).any():
            same = sub_a.unsqueeze(1) == sub_b.unsqueeze(0)
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
        targets = torch.arange(len(pairs), device=embeddings.device)
        loss = F.cross_entropy(logits[positive], targets[positive])
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T[positive], targets[positive]))
        return loss
