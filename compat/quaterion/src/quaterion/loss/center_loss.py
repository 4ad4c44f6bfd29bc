from typing import Optional

import torch
from torch import LongTensor, Tensor, nn
from torch.nn import functional as F

from quaterion.loss._kernel import check_group_ids
from quaterion.loss.group_loss import GroupLoss


class CenterLoss(GroupLoss):
    """``lambda_c * mse(unit embeddings, their groups' centers)``; centers are learned
    (``num_groups x embedding_size``, Xavier-uniform)."""

    def __init__(self, embedding_size: int, num_groups: int, lambda_c: Optional[float] = 0.5):
        super().__init__()
        self.num_groups = num_groups
        self.centers = nn.Parameter(torch.randn(num_groups, embedding_size))
        self.lambda_c = lambda_c
        nn.init.xavier_uniform_(self.centers)

    def get_config_dict(self):
        return {"embedding_size": self.centers.shape[1], "num_groups": self.num_groups, "lambda_c": self.lambda_c}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        groups = check_group_ids(groups, self.num_groups)
        centers = self.centers.index_select(0, groups)
        return F.mse_loss(F.normalize(embeddings, dim=1), centers) * self.lambda_c
