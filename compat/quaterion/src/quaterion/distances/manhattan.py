from typing import Optional

import torch
from torch import Tensor

from quaterion.distances.base_distance import BaseDistance


class Manhattan(BaseDistance):
    name = "quaterion_manhattan"

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        return torch.pairwise_distance(x, y, p=1)

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        return 1 / (1 + Manhattan.distance(x, y))

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        other = x if y is None else y
        return (x.unsqueeze(1) - other.unsqueeze(0)).abs().sum(dim=-1)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return 1 / (1 + Manhattan.distance_matrix(x, y))
