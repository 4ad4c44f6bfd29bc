from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.loss import EmbeddingGroupLoss, group_masks


class CircleLoss(EmbeddingGroupLoss):
    """Circle loss (Sun et al., 2020) on cosine similarities, per anchor::

        softplus(logsumexp_n(scale_factor * a_n * (s_n - margin))
                 + logsumexp_p(-scale_factor * a_p * (s_p - 1 + margin)))

    with the self-paced weights ``a_p = relu(1 + margin - s_p)`` and ``a_n = relu(s_n + margin)``
    taken as constants. The mean over anchors that have both a positive and a negative.
    """

    def __init__(self, margin: float = 0.25, scale_factor: float = 256.0):
        super().__init__(distance_metric_name="cosine")
        self.margin = float(margin)
        self.scale_factor = float(scale_factor)

    def get_config_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "scale_factor": self.scale_factor}

    def reference_loss(self, embeddings, groups, references, reference_groups, same_set):  # type: ignore[override]
        sim = self.distance_metric.similarity_matrix(embeddings, None if same_set else references)
        positive, negative = group_masks(groups, reference_groups, same_set)
        weight_p = F.relu(1.0 + self.margin - sim.detach())
        weight_n = F.relu(sim.detach() + self.margin)
        logit_p = (-self.scale_factor * weight_p * (sim - (1.0 - self.margin))).masked_fill(~positive, float("-inf"))
        logit_n = (self.scale_factor * weight_n * (sim - self.margin)).masked_fill(~negative, float("-inf"))
        valid = positive.any(1) & negative.any(1)
        if not valid.any():
            return embeddings.sum() * 0.0
        rows = torch.logsumexp(logit_p[valid], 1) + torch.logsumexp(logit_n[valid], 1)
        return F.softplus(rows).mean()
