from quaterion import _simplug
from quaterion.loss._native import OriginalGroupCall


class ArcFaceLoss(OriginalGroupCall, _simplug.ArcFaceLoss):
    """``ArcFaceLoss(embedding_size, num_groups, scale=64.0, margin=0.5)``: simplug's implementation
    (same arguments as the original)."""
