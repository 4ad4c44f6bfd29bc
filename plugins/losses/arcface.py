from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from simplug.components.loss import MarginSoftmaxLoss


class ArcFaceLoss(MarginSoftmaxLoss):
    """Additive angular margin loss (ArcFace, Deng et al., 2019).

    Each group has a learned weight vector (``weight``: ``(num_groups, embedding_size)``).
    Logits are ``scale * cos(angle)`` between the normalised embedding and each weight, with
    ``margin`` (radians) added to the angle of the true group; past ``pi - margin``, where
    ``cos(angle + margin)`` would rise again, the logit is ``cos(angle) - margin * sin(margin)``.
    Cross entropy, mean over the batch.
    """

    def __init__(self, embedding_size: int, num_groups: int, scale: float = 64.0, margin: float = 0.5):
        if not 0 <= margin < math.pi:
            raise ValueError(f"margin is an angle in radians in [0, pi), got {margin!r}")
        super().__init__(embedding_size, num_groups, scale=scale, margin=margin)

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        cosine = self.cosines(embeddings)
        target = cosine.gather(1, groups.unsqueeze(1)).squeeze(1)
        # acos has an infinite slope at +-1: stay just inside
        angle = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        with_margin = torch.where(
            angle <= math.pi - self.margin,
            torch.cos(angle + self.margin),
            target - self.margin * math.sin(self.margin),
        )
        logits = cosine.scatter(1, groups.unsqueeze(1), with_margin.unsqueeze(1)) * self.scale
        return F.cross_entropy(logits, groups)
