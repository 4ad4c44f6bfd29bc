from __future__ import annotations

from typing import Any

import torch
from simplug.components.loss import PairwiseLoss, pairs_and_subgroup_negatives


class CoSENTLoss(PairwiseLoss):
    """CoSENT (Su, 2022): learns the order of graded ``score`` values.

    For every two pairs ``i``, ``j`` with ``score_i > score_j`` the similarity of ``i``
    should exceed that of ``j``::

        log(1 + sum over score_i > score_j of exp(scale * (sim_j - sim_i)))

    Only the order of the scores matters, so any scale works (0..1, 0..5, -1..1). When the
    batch holds several subgroups, every unordered couple of embeddings from different
    subgroups enters as one more pair with score ``negative_score`` (0.0: dissimilar).
    """

    def __init__(self, scale: float = 20.0, distance_metric_name: str = "cosine", negative_score: float = 0.0):
        super().__init__(distance_metric_name=distance_metric_name)
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)
        self.negative_score = float(negative_score)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "scale": self.scale, "negative_score": self.negative_score}

    def compute(self, embeddings, pairs, labels, subgroups):  # type: ignore[override]
        similarities, scores = pairs_and_subgroup_negatives(
            embeddings, pairs, labels, subgroups,
            self.distance_metric.similarity, self.distance_metric.similarity_matrix, self.negative_score,
        )
        logits = similarities * self.scale
        # Sorted by score, the pairs ranked above pair j are a suffix of the order, so the
        # sum over all (i, j) is n log n: log-sum-exp of -logit over each suffix.
        scores, order = scores.sort()
        logits = logits[order]
        suffix = torch.logcumsumexp(-logits.flip(0), dim=0).flip(0)
        suffix = torch.cat([suffix, logits.new_full((1,), float("-inf"))])
        first_higher = torch.searchsorted(scores, scores, right=True)
        terms = logits + suffix[first_higher]  # log sum_{i above j} exp(logit_j - logit_i)
        return torch.logsumexp(torch.cat([logits.new_zeros(1), terms]), dim=0)
