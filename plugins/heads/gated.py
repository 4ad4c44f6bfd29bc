from __future__ import annotations

import torch
from simplug.components.head import EncoderHead
from torch import nn


class GatedHead(EncoderHead):
    """``output = x * tanh(g)``: one learnable gate per dimension, initialised to 2.0
    (tanh(2) = 0.964), so the untrained head is close to the identity."""

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        self.gates = nn.Parameter(torch.full((input_embedding_size,), 2.0))

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return input_vectors * torch.tanh(self.gates)
