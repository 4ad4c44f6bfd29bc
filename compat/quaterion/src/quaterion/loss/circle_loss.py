from typing import Optional

import torch
from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.distances import Distance
from quaterion.loss.group_loss import GroupLoss
from quaterion.utils import get_anchor_negative_mask, get_anchor_positive_mask


class CircleLoss(GroupLoss):
    """Circle loss over the batch's pairs (each unordered pair once), on the distance's
    ``similarity_matrix`` (for cosine the original's ``(cos + 1) / 2``)::

        a_p = relu(1 + m + s_p),  a_n = relu(s_n - m)   (the original's weights, treated as constants)
        loss = softplus(logsumexp(gamma * a_n * (s_n - m)) + logsumexp(-gamma * a_p * (s_p - (1 - m))))
    """

    def __init__(self, margin: Optional[float] = 0.25, scale_factor: Optional[float] = 256,
                 distance_metric_name: Optional[Distance] = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)
        self.margin = margin
        self.scale_factor = scale_factor

    def get_config_dict(self):
        return {**super().get_config_dict(), "margin": self.margin, "scale_factor": self.scale_factor}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        similarities = self.distance_metric.similarity_matrix(embeddings)
        upper = torch.ones_like(similarities, dtype=torch.bool).triu(diagonal=1)
        s_p = similarities[get_anchor_positive_mask(groups, groups) & upper]
        s_n = similarities[get_anchor_negative_mask(groups, groups) & upper]
        a_p = torch.clamp_min(1 + self.margin + s_p.detach(), 0)
        a_n = torch.clamp_min(s_n.detach() - self.margin, 0)
        positive = -a_p * self.scale_factor * (s_p - (1 - self.margin))
        negative = a_n * self.scale_factor * (s_n - self.margin)
        return F.softplus(torch.logsumexp(negative, dim=0) + torch.logsumexp(positive, dim=0))
