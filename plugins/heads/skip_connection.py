from __future__ import annotations

from typing import Any

import torch
from simplug.components.head import EncoderHead
from torch import nn


class SkipConnectionHead(EncoderHead):
    """``n_layers`` gated residual layers: ``x = fc(skip_dropout(x)) * sigmoid(gate) + x``.

    The gates start at -4 (sigmoid = 0.018), so the untrained head is close to the identity
    and training starts from the encoder's own geometry.
    """

    def __init__(
        self,
        input_embedding_size: int,
        dropout: float = 0.0,
        skip_dropout: float = 0.0,
        n_layers: int = 1,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
        if not 0.0 <= float(skip_dropout) < 1.0:
            raise ValueError(f"skip_dropout must be in [0, 1), got {skip_dropout!r}")
        self.n_layers = n_layers
        self.skip_dropout_p = float(skip_dropout)
        self.skip_dropout = nn.Dropout(p=skip_dropout) if skip_dropout > 0 else nn.Identity()
        self.fcs = nn.ModuleList(
            nn.Linear(input_embedding_size, input_embedding_size) for _ in range(n_layers)
        )
        self.gates = nn.ParameterList(
            nn.Parameter(torch.full((input_embedding_size,), -4.0)) for _ in range(n_layers)
        )

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        x = input_vectors
        for fc, gate in zip(self.fcs, self.gates):
            x = fc(self.skip_dropout(x)) * torch.sigmoid(gate) + x
        return x

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "skip_dropout": self.skip_dropout_p, "n_layers": self.n_layers}
