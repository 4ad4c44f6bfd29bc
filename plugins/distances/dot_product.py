from __future__ import annotations

import torch
from simplug.components.distance import Distance


class DotProduct(Distance):
    """Dot-product similarity; distance = -similarity (unbounded, smaller is closer)."""

    name = "dot_product"

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(-1)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.similarity(x, y)

    def similarity_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x @ (x if y is None else y).T

    def distance_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -self.similarity_matrix(x, y)
