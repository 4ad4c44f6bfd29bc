from typing import Optional

from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.loss._kernel import check_group_ids, group_kernel
from quaterion.loss.group_loss import GroupLoss


class CosFaceLoss(GroupLoss):
    """Additive cosine margin: logits ``scale * (cos(theta) - margin * onehot)``.

    The original's parameters (``kernel``: ``embedding_size x num_groups``); unlike the original,
    which applied ``cos`` once more to values that were already cosines, the margin is applied to
    the cosines (the published CosFace)."""

    def __init__(self, embedding_size: int, num_groups: int, margin: Optional[float] = 0.35,
                 scale: Optional[float] = 64.0):
        super().__init__()
        self.kernel = group_kernel(embedding_size, num_groups)
        self.scale = scale
        self.margin = margin

    def get_config_dict(self):
        return {"embedding_size": self.kernel.shape[0], "num_groups": self.kernel.shape[1], "margin": self.margin,
                "scale": self.scale}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        groups = check_group_ids(groups, self.kernel.shape[1])
        cos_theta = (F.normalize(embeddings, dim=1) @ F.normalize(self.kernel, dim=0)).clamp(-1, 1)
        margins = F.one_hot(groups, self.kernel.shape[1]).to(cos_theta.dtype) * self.margin
        return F.cross_entropy((cos_theta - margins) * self.scale, groups)
