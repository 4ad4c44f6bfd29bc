from __future__ import annotations

from typing import Any, Sequence

import torch
from simplug.components.head import EncoderHead
from simplug.plugins.heads.layers import build_layer, describe_layer, output_width
from torch import nn


class SequentialHead(EncoderHead):
    """Layers applied in turn, described in the config (see ``layers`` for the forms)::

        {"name": "sequential", "layers": [
            {"type": "Linear", "out_features": 64}, "gelu", {"type": "LayerNorm"},
            {"head": "skip_connection"}, {"type": "Linear", "out_features": 32}]}

    Saved as JSON (torch.nn class names and arguments, registered heads by name), never
    pickled. ``output_size`` may be given to check the stack ends where it should.
    """

    def __init__(
        self,
        input_embedding_size: int,
        layers: Sequence[Any],
        output_size: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        if isinstance(layers, (str, bytes, dict)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(
                "layers must be a non-empty list of layer descriptions, e.g. [{'type': 'Linear', "
                f"'out_features': 64}}, 'relu'], got {layers!r}"
            )
        modules, width = [], input_embedding_size
        for i, spec in enumerate(layers):
            where = f"sequential head layers[{i}]"
            layer = build_layer(spec, width, where)
            width = output_width(layer, width, where)
            modules.append(layer)
        if output_size is not None and output_size != width:
            raise ValueError(f"the sequential head's layers end with {width} features, but output_size={output_size!r}")
        self.layers = nn.Sequential(*modules)
        self._output_size = width

    @property
    def output_size(self) -> int:
        return self._output_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return self.layers(input_vectors)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "layers": [describe_layer(layer) for layer in self.layers],
            "output_size": self._output_size,
        }
