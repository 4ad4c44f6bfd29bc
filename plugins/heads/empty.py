from __future__ import annotations

import torch
from simplug.components.head import EncoderHead


class EmptyHead(EncoderHead):
    """Identity head: no parameters, output = input."""

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return input_vectors
