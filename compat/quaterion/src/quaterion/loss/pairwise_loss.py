from torch import Tensor

from quaterion import _simplug
from quaterion.distances import Distance
from quaterion.loss.similarity_loss import SimilarityLoss


class PairwiseLoss(SimilarityLoss, _simplug.PairwiseLoss):
    """``forward(embeddings, pairs, labels, subgroups)``."""

    _native_kind = _simplug.PairwiseLoss

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        SimilarityLoss.__init__(self, distance_metric_name=distance_metric_name)

    def forward(self, embeddings: Tensor, pairs: Tensor, labels: Tensor, subgroups: Tensor) -> Tensor:
        raise NotImplementedError()
