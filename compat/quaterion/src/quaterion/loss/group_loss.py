from torch import LongTensor, Tensor

from quaterion import _simplug
from quaterion.distances import Distance
from quaterion.loss.similarity_loss import SimilarityLoss


class GroupLoss(SimilarityLoss, _simplug.GroupLoss):
    """``forward(embeddings, groups)``; ``xbm_loss`` for cross-batch memory where supported."""

    _native_kind = _simplug.GroupLoss

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        SimilarityLoss.__init__(self, distance_metric_name=distance_metric_name)

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        raise NotImplementedError()

    def xbm_loss(self, embeddings: Tensor, groups: LongTensor, memory_embeddings: Tensor,
                 memory_groups: LongTensor) -> Tensor:
        raise NotImplementedError(f"XBM is not implemented for {self.__class__.__name__}")
