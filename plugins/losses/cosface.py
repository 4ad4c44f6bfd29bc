from __future__ import annotations

import torch
import torch.nn.functional as F
from simplug.components.loss import MarginSoftmaxLoss


class CosFaceLoss(MarginSoftmaxLoss):
    """Large margin cosine loss (CosFace, Wang et al., 2018).

    Each group has a learned weight vector (``weight``: ``(num_groups, embedding_size)``).
    Logits are ``scale * cos`` between the normalised embedding and each weight, with
    ``margin`` subtracted from the cosine of the true group. Cross entropy, mean over the
    batch. (The margin is subtracted from the cosine itself, not from a cosine of it.)
    """

    def __init__(self, embedding_size: int, num_groups: int, margin: float = 0.35, scale: float = 64.0):
        super().__init__(embedding_size, num_groups, scale=scale, margin=margin)

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        cosine = self.cosines(embeddings)
        margins = F.one_hot(groups, self.num_groups).to(cosine.dtype) * self.margin
        return F.cross_entropy((cosine - margins) * self.scale, groups)
