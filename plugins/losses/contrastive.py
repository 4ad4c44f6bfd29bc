from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from simplug.loss import PairwiseLoss, subgroup_negatives


class ContrastiveLoss(PairwiseLoss):
    """Contrastive loss (Hadsell et al., 2006) over pairs.

    Per pair with score ``s`` in [0, 1] and distance ``d``:
    ``0.5 * (s * d^2 + (1 - s) * relu(margin - d)^2)``. Embeddings of different subgroups
    are added as negative pairs. The result is the mean over all terms.
    """

    def __init__(self, distance_metric_name: str = "cosine", margin: float = 0.5):
        super().__init__(distance_metric_name=distance_metric_name)
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin!r}")
        self.margin = float(margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "margin": self.margin}

    def forward(self, embeddings, pairs, labels, subgroups):  # type: ignore[override]
        rep_a = embeddings[pairs[:, 0]]
        rep_b = embeddings[pairs[:, 1]]
        scores = labels.to(embeddings.dtype).clamp(0.0, 1.0)
        d = self.distance_metric.distance(rep_a, rep_b)
        terms = 0.5 * (scores * d.pow(2) + (1.0 - scores) * F.relu(self.margin - d).pow(2))
        total = terms.sum()
        count = terms.numel()
        negatives = torch.triu(subgroup_negatives(subgroups), diagonal=1)
        if negatives.any():
            dm = self.distance_metric.distance_matrix(embeddings)
            neg_terms = 0.5 * F.relu(self.margin - dm[negatives]).pow(2)
            total = total + neg_terms.sum()
            count += neg_terms.numel()
        return total / count
