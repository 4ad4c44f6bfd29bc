from __future__ import annotations

import torch
import torch.nn.functional as F
from simplug.components.distance import Distance


class Cosine(Distance):
    """Cosine similarity; distance = 1 - similarity, in [0, 2] in both the row and matrix forms."""

    name = "cosine"

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(x, y, dim=-1, eps=1e-8)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.similarity(x, y)

    def similarity_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x_n = F.normalize(x, p=2, dim=-1, eps=1e-8)
        y_n = x_n if y is None else F.normalize(y, p=2, dim=-1, eps=1e-8)
        return x_n @ y_n.T

    def distance_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 1.0 - self.similarity_matrix(x, y)
