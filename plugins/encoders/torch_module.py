from __future__ import annotations

import os
from typing import Any, Callable

import torch
from simplug.components.encoder import (
    WEIGHTS_FILE,
    Encoder,
    default_collate,
    read_encoder_config,
)
from simplug.errors import ModelFormatError
from simplug.files import read_model_file
from simplug.model.torch_spec import (
    build_with_weights,
    module_from_spec,
    module_to_spec,
    read_safetensors,
)
from torch import nn


class TorchModuleEncoder(Encoder):
    """An encoder around any ``torch.nn.Module`` that maps a tensor batch to ``(batch, dim)``.

    Give ``module`` as an instance (its structure is recorded on save: standard ``torch.nn``
    layers by name, your own classes as local code) or as a spec dict from a saved model.
    ``embedding_size`` is found by a dry run when ``input_size`` is given and it is omitted.
    """

    def __init__(
        self,
        module: nn.Module | dict[str, Any],
        embedding_size: int | None = None,
        trainable: bool = False,
        input_size: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ):
        super().__init__()
        if isinstance(module, dict):
            module = module_from_spec(module)
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self._trainable = bool(trainable)
        self._input_size = input_size
        if embedding_size is None:
            if input_size is None:
                raise ValueError("give embedding_size, or input_size so it can be measured by a dry run")
            with torch.no_grad():
                was_training = module.training
                module.eval()
                embedding_size = int(module(torch.zeros(2, input_size)).shape[-1])
                module.train(was_training)
        self._embedding_size = int(embedding_size)
        self._collate_fn = collate_fn
        self.disable_gradients_if_required()

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def embedding_size(self) -> int:
        return self._embedding_size

    def get_collate_fn(self) -> Callable[[list[Any]], Any]:
        return self._collate_fn or default_collate

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "module": module_to_spec(self.module),
            "embedding_size": self._embedding_size,
            "trainable": self._trainable,
            "input_size": self._input_size,
        }

    @classmethod
    def load(cls, input_path: str) -> "TorchModuleEncoder":
        """Rebuild the module from its recorded spec and load its weights, checking the sizes the
        spec asks for against the weights file before allocating them (a 100-byte config cannot
        make the loader allocate a ``Linear(200000, 200000)``)."""
        config = read_encoder_config(input_path)
        if not isinstance(config.get("module"), dict):
            raise ModelFormatError(f"encoder config in {input_path} has no module spec; save the model again")
        if not isinstance(config.get("embedding_size"), int) or isinstance(config.get("embedding_size"), bool):
            # without it the constructor measures it by a dry run on an input of input_size
            raise ModelFormatError(f"encoder config in {input_path} lacks an integer embedding_size; save the model again")
        weights = os.path.join(input_path, WEIGHTS_FILE)
        try:
            data = read_model_file(weights, "encoder weights")
        except FileNotFoundError:
            raise ModelFormatError(
                f"{weights} is missing; the encoder would load with random weights. Copy the whole model "
                "directory, or save it again"
            ) from None
        state = read_safetensors(data, weights)

        def build() -> TorchModuleEncoder:
            try:
                return cls(**config)
            except (TypeError, ValueError) as exc:
                raise ModelFormatError(f"encoder config in {input_path} does not build a {cls.__name__}: {exc}") from None

        return build_with_weights(build, state, f"encoder weights in {input_path}")
