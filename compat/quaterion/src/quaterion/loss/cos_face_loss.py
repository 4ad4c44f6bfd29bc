from quaterion import _simplug
from quaterion.loss._native import OriginalGroupCall


class CosFaceLoss(OriginalGroupCall, _simplug.CosFaceLoss):
    """``CosFaceLoss(embedding_size, num_groups, margin=0.35, scale=64.0)``: simplug's implementation,
    which applies the margin to cosines (the original applied ``cos`` to values that were already
    cosines)."""
