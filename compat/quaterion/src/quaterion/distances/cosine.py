from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from quaterion.distances.base_distance import BaseDistance


class Cosine(BaseDistance):
    name = "quaterion_cosine"

    @staticmethod
    def similarity(x: Tensor, y: Tensor) -> Tensor:
        return torch.cosine_similarity(x, y)

    @staticmethod
    def distance(x: Tensor, y: Tensor) -> Tensor:
        return 1 - torch.cosine_similarity(x, y)

    @staticmethod
    def similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        x_unit = F.normalize(x, p=2, dim=1)
        y_unit = x_unit if y is None else F.normalize(y, p=2, dim=1)
        return (x_unit @ y_unit.T + 1) / 2

    @staticmethod
    def distance_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return 1 - Cosine.similarity_matrix(x, y)
