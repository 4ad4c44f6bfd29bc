from typing import Any, Dict, Optional

import torch
from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.distances import Distance
from quaterion.loss.group_loss import GroupLoss
from quaterion.utils import get_anchor_positive_mask

MINING = ("all", "hard")


class OnlineContrastiveLoss(GroupLoss):
    """``0.5 * (positive_loss + negative_loss)`` over in-batch pairs.

    Positives are pairs of one group (not an object with itself); "negatives" are all other pairs,
    the diagonal included, as in the original. ``hard``: per anchor the farthest positive and the
    closest negative, averaged over anchors that have one; ``all``: every pair.
    """

    def __init__(self, margin: Optional[float] = 0.5, distance_metric_name: Distance = Distance.COSINE,
                 mining: Optional[str] = "hard"):
        if mining not in MINING:
            raise ValueError(f"Unrecognized mining strategy: {mining}. Must be one of {', '.join(MINING)}")
        super().__init__(distance_metric_name=distance_metric_name)
        self._margin = margin
        self._mining = mining

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "margin": self._margin, "mining": self._mining}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        dists = self.distance_metric.distance_matrix(embeddings)
        positive = get_anchor_positive_mask(groups, groups)
        positive_dists = positive.to(dists.dtype) * dists
        big = torch.finfo(dists.dtype).max
        negative_dists = dists.masked_fill(positive, big)
        tiny = torch.tensor(1e-16, device=dists.device)
        if self._mining == "all":
            positive_loss = positive_dists.sum() / torch.max(positive.sum().to(dists.dtype), tiny)
            negative_loss = F.relu(self._margin - negative_dists).sum() / torch.max(
                (~positive).sum().to(dists.dtype), tiny)
        else:
            hardest_positive = positive_dists.max(dim=1).values
            positive_loss = hardest_positive.sum() / torch.max(
                torch.count_nonzero(hardest_positive).to(dists.dtype), tiny)
            hardest_negative = negative_dists.min(dim=1).values
            valid = (hardest_negative < big).to(dists.dtype).sum()
            negative_loss = F.relu(self._margin - hardest_negative).sum() / torch.max(valid, tiny)
        return 0.5 * (positive_loss + negative_loss)
