from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from simplug.components.loss import EmbeddingGroupLoss, group_masks

MINING = ("hard", "all")


class OnlineContrastiveLoss(EmbeddingGroupLoss):
    """Contrastive loss over pairs formed inside a batch of groups.

    Positive pairs (same group) cost ``d^2``, negative pairs ``relu(margin - d)^2``; the loss
    is ``0.5 * (mean positive cost + mean negative cost)`` (two means, because a batch holds
    many more negative pairs than positive ones).
    ``mining="all"``: every pair.
    ``mining="hard"``: per anchor only its farthest positive and its nearest negative; the
    means are over the anchors that have one.
    """

    def __init__(self, margin: float = 0.5, distance_metric_name: str = "cosine", mining: str = "hard"):
        super().__init__(distance_metric_name=distance_metric_name)
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(MINING)}; got {mining!r}")
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin!r}")
        self.margin = float(margin)
        self.mining = mining

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "margin": self.margin, "mining": self.mining}

    def reference_loss(self, embeddings, groups, references, reference_groups, same_set):  # type: ignore[override]
        dist = self.distance_metric.distance_matrix(embeddings, None if same_set else references)
        positive, negative = group_masks(groups, reference_groups, same_set)
        if self.mining == "hard":
            has_pos, has_neg = positive.any(1), negative.any(1)
            positive_d = dist.masked_fill(~positive, float("-inf")).amax(1)[has_pos]
            negative_d = dist.masked_fill(~negative, float("inf")).amin(1)[has_neg]
        else:
            positive_d, negative_d = dist[positive], dist[negative]
        loss = embeddings.sum() * 0.0  # keeps the graph when a batch has no pair of a kind
        if positive_d.numel():
            loss = loss + 0.5 * positive_d.pow(2).mean()
        if negative_d.numel():
            loss = loss + 0.5 * F.relu(self.margin - negative_d).pow(2).mean()
        return loss
