"""Encoder base class: turns raw objects into embeddings."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from simplug.errors import ModelFormatError
from simplug.files import read_model_file
from torch import nn

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
    """The constructor arguments an encoder saved beside its weights (read through the saved
    model's checked reader, ``simplug.files.read_model_file``)."""
    config_path = os.path.join(input_path, CONFIG_FILE)
    try:
        config = json.loads(read_model_file(config_path, "encoder config").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFormatError(f"cannot read encoder config {config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelFormatError(f"encoder config {config_path} is not a JSON object; save the model again")
    return config


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
        from safetensors import SafetensorError
        from safetensors.torch import load

        encoder = cls(**read_encoder_config(input_path))
        expected = encoder.state_dict()
        weights = os.path.join(input_path, WEIGHTS_FILE)
        if not expected and not os.path.exists(weights):
            return encoder  # nothing to load
        try:
            state = load(read_model_file(weights, "encoder weights"))
        except FileNotFoundError:
            raise ModelFormatError(
                f"{cls.__name__} in {input_path} has weights but {WEIGHTS_FILE} is missing; it would load with "
                "random weights. Copy the whole model directory, or save it again"
            ) from None
        except SafetensorError as exc:
            raise ModelFormatError(f"{weights} is not a readable safetensors file ({exc})") from None
        mismatched = [k for k in expected if k in state and (state[k].shape != expected[k].shape or state[k].dtype != expected[k].dtype)]
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected or mismatched:
            raise ModelFormatError(
                f"encoder weights in {input_path} do not fit {cls.__name__} built from its config (missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}, other shape or dtype {mismatched[:5]}); save the model again"
            )
        encoder.load_state_dict(state, strict=True)
        return encoder

    def disable_gradients_if_required(self) -> None:
        """Frozen encoders keep ``requires_grad=False`` on every parameter."""
        if not self.trainable:
            for param in self.parameters():
                param.requires_grad = False
