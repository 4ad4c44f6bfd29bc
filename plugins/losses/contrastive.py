from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from simplug.components.loss import PairwiseLoss, pairs_and_subgroup_negatives


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

    def compute(self, embeddings, pairs, labels, subgroups):  # type: ignore[override]
        distances, scores = pairs_and_subgroup_negatives(
            embeddings, pairs, labels, subgroups,
            self.distance_metric.distance, self.distance_metric.distance_matrix,
        )
        scores = scores.clamp(0.0, 1.0)
        terms = 0.5 * (scores * distances.pow(2) + (1.0 - scores) * F.relu(self.margin - distances).pow(2))
        return terms.mean()
