from typing import Any, Dict, Optional

import torch
from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.distances import Distance
from quaterion.loss.group_loss import GroupLoss
from quaterion.utils import get_anchor_negative_mask, get_anchor_positive_mask, get_triplet_mask

MINING = ("all", "hard", "semi_hard")


class TripletLoss(GroupLoss):
    """The original's triplet loss.

    - ``hard``: per anchor the farthest positive ``p`` (0 when it has none) and the closest negative
      ``n``; loss ``mean(relu((p - n) / mean(n) + margin))`` over all anchors (``softplus(p - n)``
      when ``soft``).
    - ``all``: every valid triplet's ``relu(d_ap - d_an + margin)``, summed and divided by the number
      of triplets with a positive loss.
    - ``semi_hard``: ``mean(clamp(d_pos - d_neg + margin, 0, margin))`` over every (positive pair,
      negative pair) combination of the batch.
    """

    def __init__(self, margin: Optional[float] = 0.5, distance_metric_name: Optional[Distance] = Distance.COSINE,
                 mining: Optional[str] = "hard", soft: Optional[bool] = False):
        if mining not in MINING:
            raise ValueError(f"Unrecognized mining strategy: {mining}. Must be one of {', '.join(MINING)}")
        super().__init__(distance_metric_name=distance_metric_name)
        self._margin = margin
        self._mining = mining
        self._soft = soft

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "margin": self._margin, "mining": self._mining, "soft": self._soft}

    def _hard_triplet_loss(self, embeddings_a: Tensor, groups_a: LongTensor, embeddings_b: Tensor,
                           groups_b: LongTensor) -> Tensor:
        dists = self.distance_metric.distance_matrix(embeddings_a, embeddings_b)
        positive = get_anchor_positive_mask(groups_a, groups_b).to(dists.dtype)
        hardest_positive = (dists * positive).max(dim=1).values
        negative = get_anchor_negative_mask(groups_a, groups_b).to(dists.dtype)
        # non-negatives are pushed up by the row maximum so that they are never the minimum
        hardest_negative = (dists + dists.max(dim=1, keepdim=True).values * (1.0 - negative)).min(dim=1).values
        if self._soft:
            losses = F.softplus(hardest_positive - hardest_negative)
        else:
            losses = F.relu((hardest_positive - hardest_negative) / hardest_negative.mean() + self._margin)
        return losses.mean()

    def _semi_hard_triplet_loss(self, embeddings_a: Tensor, groups_a: Tensor, embeddings_b: Tensor,
                                groups_b: Tensor) -> Tensor:
        dists = self.distance_metric.distance_matrix(embeddings_a, embeddings_b)
        same = groups_a[:, None] == groups_b[None, :]
        positive_dists = dists[same]
        negative_dists = dists[~same]
        combined = positive_dists[:, None] - negative_dists[None, :] + self._margin
        return combined.clamp(min=0.0).clamp(max=self._margin).mean()

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        if self._mining == "all":
            dists = self.distance_metric.distance_matrix(embeddings)
            per_triplet = dists.unsqueeze(2) - dists.unsqueeze(1) + self._margin
            per_triplet = F.relu(get_triplet_mask(groups).to(dists.dtype) * per_triplet)
            active = (per_triplet > 1e-16).to(dists.dtype).sum()
            return per_triplet.sum() / (active + 1e-16)
        if self._mining == "hard":
            return self._hard_triplet_loss(embeddings, groups, embeddings, groups)
        return self._semi_hard_triplet_loss(embeddings, groups, embeddings, groups)

    def xbm_loss(self, embeddings: Tensor, groups: LongTensor, memory_embeddings: Tensor,
                 memory_groups: LongTensor) -> Tensor:
        if len(memory_groups) == 0 or self._mining == "all":
            return torch.tensor(0, device=embeddings.device)
        if self._mining == "hard":
            return self._hard_triplet_loss(embeddings, groups, memory_embeddings, memory_groups)
        return self._semi_hard_triplet_loss(embeddings, groups, memory_embeddings, memory_groups)
