from __future__ import annotations

from typing import Any

import torch
from simplug.components.loss import EmbeddingGroupLoss, group_masks


class SupervisedContrastiveLoss(EmbeddingGroupLoss):
    """Supervised contrastive loss (SupCon, Khosla et al., 2020) on cosine similarities.

    Per anchor: ``-mean over positives p of log softmax(sim / temperature)[p]``, the softmax
    running over every other candidate. The mean over anchors that have a positive (zero
    when the batch has no positive or no negative pair).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__(distance_metric_name="cosine")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def reference_loss(self, embeddings, groups, references, reference_groups, same_set):  # type: ignore[override]
        logits = self.distance_metric.similarity_matrix(embeddings, None if same_set else references) / self.temperature
        positive, negative = group_masks(groups, reference_groups, same_set)
        if not (positive.any() and negative.any()):
            return embeddings.sum() * 0.0
        log_norm = torch.logsumexp(logits.masked_fill(~(positive | negative), float("-inf")), dim=1, keepdim=True)
        has_positive = positive.any(1)
        log_prob = (logits - log_norm).masked_fill(~positive, 0.0)
        per_anchor = -log_prob.sum(1)[has_positive] / positive.sum(1)[has_positive]
        return per_anchor.mean()
