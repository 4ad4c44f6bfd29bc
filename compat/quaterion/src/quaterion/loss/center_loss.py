from typing import Optional

from quaterion import _simplug
from quaterion.loss._native import OriginalGroupCall


class CenterLoss(OriginalGroupCall, _simplug.CenterLoss):
    """``CenterLoss(embedding_size, num_groups, lambda_c=0.5)``: simplug's implementation."""

    def __init__(self, embedding_size: int, num_groups: int, lambda_c: Optional[float] = 0.5):
        super().__init__(embedding_size, num_groups, lambda_c=lambda_c)
