from torch import LongTensor, Tensor
from torch.nn import functional as F

from quaterion.loss._kernel import check_group_ids, group_kernel
from quaterion.loss.group_loss import GroupLoss


class SoftmaxLoss(GroupLoss):
    """Cross entropy of ``embeddings @ kernel / temperature`` (``kernel``: ``embedding_size x num_groups``)."""

    def __init__(self, embedding_size: int, num_groups: int, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature
        self.kernel = group_kernel(embedding_size, num_groups)

    def get_config_dict(self):
        return {"embedding_size": self.kernel.shape[0], "num_groups": self.kernel.shape[1],
                "temperature": self.temperature}

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        groups = check_group_ids(groups, self.kernel.shape[1])
        return F.cross_entropy(embeddings @ self.kernel / self.temperature, groups)
