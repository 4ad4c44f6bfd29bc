from quaterion import _simplug
from quaterion.loss._native import OriginalGroupCall


class SoftmaxLoss(OriginalGroupCall, _simplug.SoftmaxLoss):
    """``SoftmaxLoss(embedding_size, num_groups, temperature=0.05)``: simplug's implementation."""
