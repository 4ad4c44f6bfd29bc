from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from simplug.loss import GroupLoss

MINING = ("hard", "all", "semi_hard")


class TripletLoss(GroupLoss):
    """Triplet margin loss ``relu(d(a, p) - d(a, n) + margin)`` over in-batch triplets.

    ``mining``: ``hard`` takes the farthest positive and the nearest negative per anchor;
    ``all`` averages over every triplet with a non-zero loss; ``semi_hard`` takes, per
    anchor-positive pair, the nearest negative farther than the positive (or the farthest
    negative when there is none). ``soft=True`` replaces the hinge with the margin-free
    ``softplus(d(a, p) - d(a, n))`` (the soft-margin form of Hermans et al., 2017).
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

    def forward(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:  # type: ignore[override]
        dist = self.distance_metric.distance_matrix(embeddings)
        same = groups.unsqueeze(0) == groups.unsqueeze(1)
        eye = torch.eye(len(groups), dtype=torch.bool, device=groups.device)
        positive = same & ~eye
        negative = ~same
        zero = embeddings.sum() * 0.0  # keeps the graph when no triplet exists
        if self.mining == "hard":
            hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
            hardest_neg = dist.masked_fill(~negative, float("inf")).amin(dim=1)
            valid = positive.any(1) & negative.any(1)
            if not valid.any():
                return zero
            return self._hinge(hardest_pos[valid] - hardest_neg[valid]).mean()
        if self.mining == "all":
            # (anchor, positive, negative) cube
            mask = positive.unsqueeze(2) & negative.unsqueeze(1)
            losses = self._hinge(dist.unsqueeze(2) - dist.unsqueeze(1))[mask]
            nonzero = losses[losses > 1e-16]
            return nonzero.mean() if nonzero.numel() else zero
        # semi_hard
        d_ap = dist.unsqueeze(2)  # (a, p, 1)
        d_an = dist.unsqueeze(1)  # (a, 1, n)
        neg = negative.unsqueeze(1)
        semi = neg & (d_an > d_ap)
        nearest_semi = torch.where(semi, d_an, torch.full_like(d_an, float("inf"))).amin(dim=2)
        farthest_neg = torch.where(neg, d_an, torch.full_like(d_an, float("-inf"))).amax(dim=2)
        chosen = torch.where(torch.isfinite(nearest_semi), nearest_semi, farthest_neg)
        valid = positive & negative.any(1, keepdim=True)
        if not valid.any():
            return zero
        return self._hinge(dist[valid] - chosen[valid]).mean()
