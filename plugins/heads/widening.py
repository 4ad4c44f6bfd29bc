from __future__ import annotations

import math
from typing import Any

import torch
from simplug.components.head import EncoderHead
from simplug.plugins.heads.activations import check_activation_name, make_activation
from torch import nn


class WideningHead(EncoderHead):
    """``in -> int(in * expansion_factor) -> activation -> in``: a wider hidden layer and a
    projection back to the input size."""

    def __init__(
        self,
        input_embedding_size: int,
        expansion_factor: float = 4.0,
        activation_fn: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        if (
            isinstance(expansion_factor, bool)
            or not isinstance(expansion_factor, (int, float))
            or not math.isfinite(expansion_factor)
            or expansion_factor <= 0
        ):
            raise ValueError(
                f"expansion_factor must be a positive finite number (e.g. 4.0), got {expansion_factor!r}"
            )
        hidden = int(input_embedding_size * expansion_factor)
        if hidden < 1:
            raise ValueError(
                f"expansion_factor={expansion_factor!r} with input_embedding_size={input_embedding_size} "
                f"gives a hidden layer of {hidden} units; use expansion_factor >= "
                f"{1 / input_embedding_size:g}"
            )
        self.expansion_factor = float(expansion_factor)
        self.hidden_size = hidden
        self.activation_fn = check_activation_name(activation_fn)
        self.expand = nn.Linear(input_embedding_size, hidden)
        self.activation = make_activation(self.activation_fn)
        self.project = nn.Linear(hidden, input_embedding_size)

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return self.project(self.activation(self.expand(input_vectors)))

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "expansion_factor": self.expansion_factor,
            "activation_fn": self.activation_fn,
        }
