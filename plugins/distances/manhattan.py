from __future__ import annotations

import torch
from simplug.components.distance import Distance


class Manhattan(Distance):
    """L1 distance; similarity = 1 / (1 + distance)."""

    name = "manhattan"

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().sum(-1)

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + self.distance(x, y))

    def distance_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cdist(x, x if y is None else y, p=1)

    def similarity_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 1.0 / (1.0 + self.distance_matrix(x, y))
