"""EncoderHead base class: the small trainable layer on top of the encoders."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EncoderHead(nn.Module):
    """``forward(x) = transform(dropout(x))``.

    Subclasses implement ``transform`` and ``output_size`` and pass their own constructor
    arguments to ``get_config_dict`` (by extending it), which is what a saved model records
    to rebuild the head.
    """

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__()
        if not isinstance(input_embedding_size, int) or input_embedding_size <= 0:
            raise ValueError(
                f"input_embedding_size must be a positive int, got {input_embedding_size!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_embedding_size = input_embedding_size
        self._dropout_p = float(dropout)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_vectors: torch.Tensor) -> torch.Tensor:
        if input_vectors.dim() != 2 or input_vectors.shape[1] != self.input_embedding_size:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of shape (batch, "
                f"{self.input_embedding_size}), got {tuple(input_vectors.shape)}: the encoders' "
                "embedding_size must equal the head's input_embedding_size"
            )
        return self.transform(self.dropout(input_vectors))

    def get_config_dict(self) -> dict[str, Any]:
        return {"input_embedding_size": self.input_embedding_size, "dropout": self._dropout_p}
