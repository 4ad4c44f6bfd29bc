from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.loss import EmbeddingGroupLoss, group_masks

MINING = ("hard", "all", "semi_hard")


class TripletLoss(EmbeddingGroupLoss):
    """Triplet margin loss ``relu(d(a, p) - d(a, n) + margin)`` over in-batch triplets.

    ``mining``: ``hard`` takes the farthest positive and the nearest negative per anchor;
    ``all`` averages over every triplet with a non-zero loss; ``semi_hard`` takes, per
    anchor-positive pair, the nearest negative farther than the positive (or the farthest
    negative when there is none). ``soft=True`` replaces the hinge with the margin-free
    ``softplus(d(a, p) - d(a, n))`` (the soft-margin form of Hermans et al., 2017); with
    ``all`` every triplet then counts, which costs anchors x positives x negatives memory
    (prefer ``hard`` or ``semi_hard`` with a large cross-batch memory).
    """

    def __init__(
        self,
        margin: float = 0.5,
        distance_metric_name: str = "cosine",
        mining: str = "hard",
        soft: bool = False,
    ):
        super().__init__(distance_metric_name=distance_metric_name)
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(MINING)}; got {mining!r}")
        self.margin = float(margin)
        self.mining = mining
        self.soft = bool(soft)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "margin": self.margin, "mining": self.mining, "soft": self.soft}

    def _hinge(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) if self.soft else F.relu(x + self.margin)

    def reference_loss(self, embeddings, groups, references, reference_groups, same_set):  # type: ignore[override]
        dist = self.distance_metric.distance_matrix(embeddings, None if same_set else references)
        positive, negative = group_masks(groups, reference_groups, same_set)
        zero = embeddings.sum() * 0.0  # keeps the graph when no triplet exists
        if self.mining == "hard":
            hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
            hardest_neg = dist.masked_fill(~negative, float("inf")).amin(dim=1)
            valid = positive.any(1) & negative.any(1)
            if not valid.any():
                return zero
            return self._hinge(hardest_pos[valid] - hardest_neg[valid]).mean()
        if self.mining == "all" and self.soft:
            # softplus is never zero: every (anchor, positive, negative) triplet counts
            mask = positive.unsqueeze(2) & negative.unsqueeze(1)
            if not mask.any():
                return zero
            return F.softplus(dist.unsqueeze(2) - dist.unsqueeze(1))[mask].mean()
        # Each anchor's negative distances, sorted, let "all" and "semi_hard" find for every
        # (anchor, positive) the negatives they need by binary search, in (n, m) memory
        # instead of an (n, m, m) triplet cube (m is large with cross-batch memory).
        neg_sorted, _ = dist.masked_fill(~negative, float("inf")).sort(dim=1)
        neg_count = negative.sum(dim=1, keepdim=True)
        if self.mining == "all":
            # the hinge is non-zero for negatives nearer than d(a, p) + margin
            bound = (dist + self.margin).contiguous()
            violating = torch.searchsorted(neg_sorted.detach(), bound.detach())
            violating = torch.minimum(violating, neg_count).masked_fill(~positive, 0)
            prefix = torch.cat([zero.expand(len(dist), 1), neg_sorted.masked_fill(neg_sorted.isinf(), 0.0).cumsum(1)], 1)
            total = (violating * bound - prefix.gather(1, violating)).sum()
            count = violating.sum()
            return total / count if count > 0 else zero
        # semi_hard: the nearest negative farther than the positive, else the farthest negative
        farther = torch.searchsorted(neg_sorted.detach(), dist.detach().contiguous(), right=True)
        chosen_index = torch.where(farther < neg_count, farther, (neg_count - 1).clamp(min=0).expand_as(farther))
        chosen = neg_sorted.gather(1, chosen_index)
        valid = positive & (neg_count > 0)
        if not valid.any():
            return zero
        return self._hinge(dist[valid] - chosen[valid]).mean()
