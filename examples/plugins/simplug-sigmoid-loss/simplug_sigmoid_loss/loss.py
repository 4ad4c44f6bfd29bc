from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from simplug.components.loss import PairwiseLoss


class SigmoidPairLoss(PairwiseLoss):
    """The pairwise sigmoid loss of SigLIP (Zhai et al., 2023) for simplug's pairs.

    Every ``(obj_a[i], obj_b[j])`` of the batch is its own binary decision with logit
    ``scale * similarity + bias``: its target is the pair's score when ``i == j`` (a graded score
    such as 0.7 is a soft target; 0 makes the pair a negative) and 0 otherwise. Unlike the
    softmax of multiple-negatives ranking, no candidate competes with another, so it works with
    small batches and with pairs whose score is not 1.

    When the batch holds more than one subgroup, an ``obj_b`` of the anchor's own subgroup (other
    than its partner) is not used as a negative, as in simplug's other pair losses.
    The sum over candidates is averaged over the anchors, as in the paper.
    """

    def __init__(self, scale: float = 10.0, bias: float = -10.0, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)
        self.bias = float(bias)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "scale": self.scale, "bias": self.bias}

    def forward(  # type: ignore[override]
        self,
        embeddings: torch.Tensor,
        pairs: torch.LongTensor,
        labels: torch.Tensor,
        subgroups: torch.Tensor,
    ) -> torch.Tensor:
        rep_a = embeddings[pairs[:, 0]]
        rep_b = embeddings[pairs[:, 1]]
        logits = self.scale * self.distance_metric.similarity_matrix(rep_a, rep_b) + self.bias
        n = len(pairs)
        diagonal = torch.eye(n, dtype=torch.bool, device=embeddings.device)
        targets = torch.where(diagonal, labels.to(logits.dtype).clamp(0.0, 1.0).unsqueeze(1), torch.zeros_like(logits))
        keep = torch.ones_like(diagonal)
        if (subgroups != subgroups[0]).any():
            same = subgroups[pairs[:, 0]].unsqueeze(1) == subgroups[pairs[:, 1]].unsqueeze(0)
            keep = ~same | diagonal
        terms = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return (terms * keep).sum() / n
