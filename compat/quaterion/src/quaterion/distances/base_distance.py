from typing import Optional

from torch import Tensor

from quaterion import _simplug


class BaseDistance(_simplug.Distance):
    """Four static views of a distance: row-wise ``distance``/``similarity`` and all-pairs
    ``distance_matrix``/``similarity_matrix`` (``y=None`` means ``x`` against itself)."""

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError
