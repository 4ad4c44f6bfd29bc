from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simplug.components.head import EncoderHead


class ProjectionHead(EncoderHead):
    """Linear projection to ``output_size``; ``normalize`` makes outputs unit length."""

    def __init__(self, input_embedding_size: int, output_size: int = 16, normalize: bool = True, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        self._output_size = output_size
        self.normalize = normalize
        self.projection = nn.Linear(input_embedding_size, output_size)

    @property
    def output_size(self) -> int:
        return self._output_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        out = self.projection(input_vectors)
        return F.normalize(out, dim=-1) if self.normalize else out

    def get_config_dict(self):
        return {**super().get_config_dict(), "output_size": self._output_size, "normalize": self.normalize}
