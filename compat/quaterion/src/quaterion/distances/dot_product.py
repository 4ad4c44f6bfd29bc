from typing import Optional

from torch import Tensor

from quaterion.distances.base_distance import BaseDistance


class DotProduct(BaseDistance):
    name = "quaterion_dot_product"

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        return (x * y).sum(dim=-1)

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        return -DotProduct.similarity(x, y)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return x @ (x if y is None else y).T

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return -DotProduct.similarity_matrix(x, y)
