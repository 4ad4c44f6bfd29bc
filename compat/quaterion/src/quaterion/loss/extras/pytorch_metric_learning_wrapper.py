"""Any pytorch-metric-learning loss (and miner) object as a group loss."""
from typing import Any, Optional

from torch import LongTensor, Tensor

from quaterion.loss.group_loss import GroupLoss


class PytorchMetricLearningWrapper(GroupLoss):
    """``PytorchMetricLearningWrapper(loss, miner=None)`` with pytorch-metric-learning objects."""

    def __init__(self, loss: Any, miner: Optional[Any] = None):
        super().__init__()
        self._loss = loss
        self._miner = miner

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        mined = self._miner(embeddings, groups) if self._miner is not None else None
        return self._loss(embeddings, groups, mined)

    def get_config_dict(self):
        return {"loss": type(self._loss).__name__, "miner": type(self._miner).__name__ if self._miner else None}
