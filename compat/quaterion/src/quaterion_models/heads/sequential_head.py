"""SequentialHead(*modules, output_size=): saved as a JSON description plus weights, never pickled."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, Union

import torch
from torch import nn

from quaterion import _simplug
from quaterion_models.heads.encoder_head import CONFIG, WEIGHTS, EncoderHead, load_state

LAYERS = "layers.json"


class SequentialHead(EncoderHead):
    """Like ``torch.nn.Sequential``, with the keyword-only ``output_size`` of its last layer."""

    def __init__(self, *args: nn.Module, output_size: int):
        super().__init__(None)
        self._sequential = nn.Sequential(*args)
        self._output_size = output_size

    @property
    def output_size(self) -> int:
        return self._output_size

    def forward(self, input_vectors: torch.Tensor, meta=None) -> torch.Tensor:
        return self._sequential(input_vectors)

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return input_vectors

    def append(self, module: nn.Module) -> "SequentialHead":
        self._sequential.append(module)
        return self

    def get_config_dict(self) -> Dict[str, Any]:
        return {"output_size": self._output_size}

    def save(self, output_path: str) -> None:
        os.makedirs(output_path, exist_ok=True)
        with open(os.path.join(output_path, LAYERS), "w") as fh:
            json.dump(_simplug.module_to_spec(self._sequential), fh, indent=2)
        torch.save(self._sequential.state_dict(), os.path.join(output_path, WEIGHTS))
        with open(os.path.join(output_path, CONFIG), "w") as fh:
            json.dump(self.get_config_dict(), fh, indent=2)

    @classmethod
    def load(cls, input_path: str) -> "SequentialHead":
        with open(os.path.join(input_path, CONFIG)) as fh:
            config = json.load(fh)
        layers_path = os.path.join(input_path, LAYERS)
        if not os.path.exists(layers_path):
            raise ValueError(
                f"{input_path} holds a SequentialHead saved by the original quaterion-models, which "
                "pickled the whole module; convert the model with "
                "quaterion_models.convert.convert_quaterion_model(old, new, trust_code=True)"
            )
        with open(layers_path) as fh:
            sequential = _simplug.module_from_spec(json.load(fh))
        sequential.load_state_dict(load_state(os.path.join(input_path, WEIGHTS)))
        return cls(*sequential, **config)

    def __getitem__(self, idx) -> Union[nn.Sequential, nn.Module]:
        return self._sequential[idx]

    def __delitem__(self, idx) -> None:
        del self._sequential[idx]

    def __setitem__(self, idx: int, module: nn.Module) -> None:
        self._sequential[idx] = module

    def __len__(self) -> int:
        return len(self._sequential)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._sequential)
