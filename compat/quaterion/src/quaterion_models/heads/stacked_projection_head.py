from typing import Any, Dict, List

import torch
from torch import nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.modules import ActivationFromFnName


class StackedProjectionHead(EncoderHead):
    """Linear layers of ``output_sizes``, with ``activation_fn`` between them (not after the last)."""

    def __init__(self, input_embedding_size: int, output_sizes: List[int], activation_fn: str = "relu",
                 dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        if not output_sizes:
            raise ValueError("output_sizes must name at least one layer size")
        self._output_sizes = list(output_sizes)
        self._activation_fn = activation_fn
        layers: List[nn.Module] = [nn.Linear(input_embedding_size, self._output_sizes[0])]
        for previous, size in zip(self._output_sizes, self._output_sizes[1:]):
            layers += [ActivationFromFnName(activation_fn), nn.Linear(previous, size)]
        self._stack = nn.Sequential(*layers)

    @property
    def output_size(self) -> int:
        return self._output_sizes[-1]

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return self._stack(input_vectors)

    def get_config_dict(self) -> Dict[str, Any]:
        return {**super().get_config_dict(), "output_sizes": self._output_sizes, "activation_fn": self._activation_fn}
