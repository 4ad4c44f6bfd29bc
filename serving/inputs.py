"""What objects a saved model's encoders take, for checking requests and building export inputs.

An encoder "takes tensors" when its collate is simplug's default collate (numbers, arrays or
tensors stacked into one float tensor); the per-object shape comes from its config
(``input_size``) or, failing that, from the first ``nn.Linear`` it contains. Other encoders
(text encoders with a tokenizer, say) have their own collate, which alone decides what they
accept.
"""
from __future__ import annotations

from typing import Any

from simplug.components.encoder import Encoder, default_collate
from simplug.errors import DataError
from torch import nn


def takes_tensors(encoder: Encoder) -> bool:
    return encoder.get_collate_fn() is default_collate


def tensor_input_shape(encoder: Encoder) -> tuple[int, ...] | None:
    """The shape of one object (without the batch axis), where the encoder lets us know it."""
    try:
        size = encoder.get_config_dict().get("input_size")
    except Exception:  # noqa: BLE001 - a config we cannot read just means "unknown"
        size = None
    if isinstance(size, int) and size > 0:
        return (size,)
    if isinstance(size, (list, tuple)) and size and all(isinstance(s, int) and s > 0 for s in size):
        return tuple(size)
    for module in encoder.modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)):
            return None  # the spatial size or the vocabulary cannot be read off the weights
    return None


def _json_shape(value: Any, where: str) -> tuple[int, ...]:
    """Shape of a nested JSON list of numbers; ``DataError`` naming the item otherwise."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict)):
        raise DataError(f"{where} is {_json_type(value)}; this model takes numbers (a list of numbers per object)")
    if isinstance(value, (int, float)):
        return ()
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where} is an empty list; this model takes a list of numbers per object")
        if all(type(v) in (int, float) for v in value):  # the common flat case, without recursion
            return (len(value),)
        shapes = {_json_shape(v, f"{where}[{i}]") for i, v in enumerate(value)}
        if len(shapes) != 1:
            raise DataError(f"{where} is a ragged list (its elements have different lengths)")
        return (len(value), *shapes.pop())
    raise DataError(f"{where} is a {type(value).__name__}, not a list of numbers")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def check_tensor_objects(objects: list[Any], expected: tuple[int, ...] | None) -> None:
    """Each object must be a list of numbers of one shape (``expected`` where known)."""
    first: tuple[int, ...] | None = expected
    for i, obj in enumerate(objects):
        shape = _json_shape(obj, f"item {i}")
        if shape == ():
            raise DataError(f"item {i} is a single number; send a list of numbers per object")
        if first is None:
            first = shape
        elif shape != first:
            what = "the model takes" if expected is not None else "item 0 has"
            raise DataError(f"item {i} has shape {list(shape)} but {what} {list(first)}")


def describe_inputs(encoders: dict[str, Encoder], head_reads_batch: bool = False) -> dict[str, Any]:
    """A JSON description of what ``/encode`` accepts for these encoders."""
    if len(encoders) == 1 and not head_reads_batch:
        encoder = next(iter(encoders.values()))
        if takes_tensors(encoder):
            shape = tensor_input_shape(encoder)
            return {"kind": "numbers", "shape": list(shape) if shape else None}
    return {"kind": "collate", "note": "objects are passed to the encoders' collate as they are"}
