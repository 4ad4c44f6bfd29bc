import torch
from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.loss._kernel import check_group_ids, group_kernel
from quaterion.loss.group_loss import GroupLoss


class ArcFaceLoss(GroupLoss):
    """Additive angular margin: logits ``scale * cos(theta + margin * onehot)``, with ``cos(theta)``
    between unit embeddings and unit columns of ``kernel`` (``embedding_size x num_groups``)."""

    def __init__(self, embedding_size: int, num_groups: int, scale: float = 64.0, margin: float = 0.5):
        super().__init__()
        self.kernel = group_kernel(embedding_size, num_groups)
        self.scale = scale
        self.margin = margin

    def get_config_dict(self):
        return {"embedding_size": self.kernel.shape[0], "num_groups": self.kernel.shape[1], "scale": self.scale,
                "margin": self.margin}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        groups = check_group_ids(groups, self.kernel.shape[1])
        cos_theta = (F.normalize(embeddings, dim=1) @ F.normalize(self.kernel, dim=0)).clamp(-1, 1)
        margins = F.one_hot(groups, self.kernel.shape[1]).to(cos_theta.dtype) * self.margin
        logits = torch.cos(torch.acos(cos_theta) + margins) * self.scale
        return F.cross_entropy(logits, groups)
