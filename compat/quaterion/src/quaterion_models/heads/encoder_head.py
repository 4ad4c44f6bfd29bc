"""EncoderHead with the original's interface (``forward(x, meta=None)``, ``save``/``load``)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from quaterion import _simplug

WEIGHTS = "weights.bin"
CONFIG = "config.json"


def load_state(path: str) -> Dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``, read without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


class EncoderHead(_simplug.EncoderHead):
    """``forward(x, meta) = transform(dropout(x))``; subclasses implement ``transform`` and
    ``output_size`` and extend ``get_config_dict`` with their constructor arguments."""

    def __init__(self, input_embedding_size: Optional[int], dropout: float = 0.0, **kwargs):
        nn.Module.__init__(self)  # the original accepts input_embedding_size=None (SequentialHead)
        self.input_embedding_size = input_embedding_size
        self._dropout_prob = dropout
        self._dropout_p = dropout
        self.dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()

    @property
    def output_size(self) -> int:
        raise NotImplementedError()

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError()

    def forward(self, input_vectors: torch.Tensor, meta: Optional[List[Any]] = None) -> torch.Tensor:
        return self.transform(self.dropout(input_vectors))

    def get_config_dict(self) -> Dict[str, Any]:
        return {"input_embedding_size": self.input_embedding_size, "dropout": self._dropout_prob}

    def save(self, output_path: str) -> None:
        os.makedirs(output_path, exist_ok=True)
        torch.save(self.state_dict(), os.path.join(output_path, WEIGHTS))
        with open(os.path.join(output_path, CONFIG), "w") as fh:
            json.dump(self.get_config_dict(), fh, indent=2)

    @classmethod
    def load(cls, input_path: str) -> "EncoderHead":
        with open(os.path.join(input_path, CONFIG)) as fh:
            config = json.load(fh)
        head = cls(**config)
        head.load_state_dict(load_state(os.path.join(input_path, WEIGHTS)))
        return head
