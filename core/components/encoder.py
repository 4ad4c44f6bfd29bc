"""Encoder base class: turns raw objects into embeddings."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from simplug.errors import ModelFormatError

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


def default_collate(batch: list[Any]) -> torch.Tensor:
    """Stack tensors, arrays or lists of numbers into one float tensor."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    first = batch[0]
    if isinstance(first, torch.Tensor):
        return torch.stack([torch.as_tensor(x) for x in batch])
    try:
        return torch.as_tensor(np.asarray(batch), dtype=torch.get_default_dtype())
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the default collate turns numbers, arrays and tensors into a batch; got "
            f"{type(first).__name__}. Give the encoder a collate function for such objects."
        ) from exc


def read_encoder_config(input_path: str) -> dict[str, Any]:
    """The constructor arguments an encoder saved beside its weights."""
    config_path = os.path.join(input_path, CONFIG_FILE)
    try:
        with open(config_path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"cannot read encoder config {config_path}: {exc}") from exc


class Encoder(nn.Module):
    """Turns a batch of raw objects into a ``(batch, embedding_size)`` tensor.

    Subclasses set ``trainable`` and ``embedding_size`` and implement ``forward``.
    ``get_collate_fn`` turns a list of raw objects into what ``forward`` takes.
    ``get_config_dict`` returns the constructor arguments; the default ``save``/``load``
    write them beside the weights, so most encoders need no save code of their own.
    """

    @property
    def trainable(self) -> bool:
        raise NotImplementedError

    @property
    def embedding_size(self) -> int:
        raise NotImplementedError

    def get_collate_fn(self) -> Callable[[list[Any]], Any]:
        return default_collate

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def cache_fill_order(self, objects: Sequence[Any]) -> Sequence[int] | None:
        """The order in which the cache fill should encode ``objects`` (positions into it), or
        ``None`` for the order given. Text encoders return the texts sorted by length, so each
        batch pads little; rows are stored back at their original positions either way."""
        return None

    def save(self, output_path: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(output_path, exist_ok=True)
        with open(os.path.join(output_path, CONFIG_FILE), "w", encoding="utf-8") as fh:
            json.dump(self.get_config_dict(), fh, indent=2, sort_keys=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(output_path, WEIGHTS_FILE))

    @classmethod
    def load(cls, input_path: str) -> "Encoder":
        from safetensors.torch import load_file

        encoder = cls(**read_encoder_config(input_path))
        weights = os.path.join(input_path, WEIGHTS_FILE)
        if os.path.exists(weights):
            missing, unexpected = encoder.load_state_dict(load_file(weights), strict=False)
            if missing or unexpected:
                raise ModelFormatError(
                    f"encoder weights in {input_path} do not fit {cls.__name__} built from its "
                    f"config (missing {missing}, unexpected {unexpected})"
                )
        return encoder

    def disable_gradients_if_required(self) -> None:
        """Frozen encoders keep ``requires_grad=False`` on every parameter."""
        if not self.trainable:
            for param in self.parameters():
                param.requires_grad = False
