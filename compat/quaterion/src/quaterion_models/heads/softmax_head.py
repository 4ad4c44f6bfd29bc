from typing import Any, Dict

import torch
from torch.nn import Linear

from quaterion_models.heads.encoder_head import EncoderHead


class SoftmaxEmbeddingsHead(EncoderHead):
    """One linear projection, split into ``output_groups`` groups, softmax within each group."""

    def __init__(self, output_groups: int, output_size_per_group: int, input_embedding_size: int,
                 dropout: float = 0.0, **kwargs):
        super().__init__(input_embedding_size, dropout=dropout, **kwargs)
        self.output_groups = output_groups
        self.output_size_per_group = output_size_per_group
        self.projection_layer = Linear(input_embedding_size, output_size_per_group * output_groups)

    @property
    def output_size(self) -> int:
        return self.output_size_per_group * self.output_groups

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        projected = self.projection_layer(input_vectors)
        grouped = projected.reshape(*projected.shape[:-1], self.output_groups, self.output_size_per_group)
        return torch.softmax(grouped, dim=-1).reshape(projected.shape)

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "output_groups": self.output_groups,
                "output_size_per_group": self.output_size_per_group}
