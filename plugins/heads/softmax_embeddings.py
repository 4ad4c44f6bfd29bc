from __future__ import annotations

from typing import Any

import torch
from simplug.components.head import EncoderHead
from simplug.registry.building import positive_int
from torch import nn


class SoftmaxEmbeddingsHead(EncoderHead):
    """A linear layer to ``output_groups * output_size_per_group`` values, a softmax within
    each group of ``output_size_per_group`` consecutive values, the groups concatenated."""

    def __init__(
        self,
        input_embedding_size: int,
        output_groups: int,
        output_size_per_group: int,
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        self.output_groups = positive_int(output_groups, "output_groups")
        self.output_size_per_group = positive_int(output_size_per_group, "output_size_per_group")
        self.projection_layer = nn.Linear(input_embedding_size, self.output_size)

    @property
    def output_size(self) -> int:
        return self.output_groups * self.output_size_per_group

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        projected = self.projection_layer(input_vectors)
        grouped = projected.reshape(-1, self.output_groups, self.output_size_per_group)
        return torch.softmax(grouped, dim=-1).flatten(start_dim=1)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "output_groups": self.output_groups,
            "output_size_per_group": self.output_size_per_group,
        }
